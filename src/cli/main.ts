#!/usr/bin/env node
import { limitMallocArenas } from '../platform/malloc-arenas.js';
import { capYoungGeneration, serialScavenges, serialScavengesWanted, youngGenerationCapBytes } from '../service/young-generation.js';

// `serve` sets its memory knobs before the other modules load (docs/operations.md, "Memory"): compiling them
// is what first grows V8's young generation, and what first makes other threads take malloc arenas.
if (process.argv[2] === 'serve') {
  limitMallocArenas(1);
  const cap = youngGenerationCapBytes();
  if (cap !== null) capYoungGeneration(cap);
  if (serialScavengesWanted()) serialScavenges();
}
await import('./program.js');
