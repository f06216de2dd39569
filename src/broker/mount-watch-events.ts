/**
 * fanotify mount events as read from the group's fd (through upcall-mount-watch's
 * pipe, which may cut them anywhere): struct fanotify_event_metadata, then info
 * records, of which FAN_EVENT_INFO_TYPE_MNT carries the 64-bit unique mount id.
 * The kernel writes these, but the parser trusts no length it reads: a record
 * that does not fit its event, or an event shorter than its header, is an error.
 */
import { BrokerError } from '../common/errors.js';
import { MW } from '../ns/mount-syscalls.js';

export interface MountEvent {
  /** FAN_MNT_ATTACH / FAN_MNT_DETACH / FAN_Q_OVERFLOW bits. */
  mask: number;
  /** The unique mount ids of the event's FAN_EVENT_INFO_TYPE_MNT records. */
  mountIds: number[];
}

/** No event of ours is near this; a larger event_len means the stream is not what we think. */
const MAX_EVENT_LEN = 4096;

/** Whole events from the front of `buf`, and how many bytes they took (the rest is a cut event). */
export function parseMountEvents(buf: Buffer): { events: MountEvent[]; used: number } {
  const events: MountEvent[] = [];
  let off = 0;
  while (buf.length - off >= MW.METADATA_LEN) {
    const len = buf.readUInt32LE(off);
    const vers = buf.readUInt8(off + 4);
    const metaLen = buf.readUInt16LE(off + 6);
    if (vers !== MW.FANOTIFY_METADATA_VERSION) throw bad(`metadata version ${vers}, expected ${MW.FANOTIFY_METADATA_VERSION}`);
    if (len < MW.METADATA_LEN || len > MAX_EVENT_LEN || metaLen < MW.METADATA_LEN || metaLen > len) throw bad(`event_len ${len}, metadata_len ${metaLen}`);
    if (buf.length - off < len) break;
    const mask = Number(buf.readBigUInt64LE(off + 8) & 0xffffffffn);
    const mountIds: number[] = [];
    for (let at = off + metaLen; at < off + len;) {
      if (off + len - at < 4) throw bad('an info header cut by the event\'s end');
      const type = buf.readUInt8(at);
      const infoLen = buf.readUInt16LE(at + 2);
      if (infoLen < 4 || at + infoLen > off + len) throw bad(`info record of ${infoLen} bytes at ${at - off} in an event of ${len}`);
      if (type === MW.FAN_EVENT_INFO_TYPE_MNT) {
        if (infoLen < MW.INFO_MNT_LEN) throw bad(`mount info record of ${infoLen} bytes`);
        mountIds.push(Number(buf.readBigUInt64LE(at + 8)));
      }
      at += infoLen;
    }
    events.push({ mask, mountIds });
    off += len;
  }
  return { events, used: off };
}

/** Events across chunks: `push` each chunk, get the events it completed. */
export class MountEventStream {
  private rest: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): MountEvent[] {
    const buf = this.rest.length === 0 ? chunk : Buffer.concat([this.rest, chunk]);
    const { events, used } = parseMountEvents(buf);
    this.rest = Buffer.from(buf.subarray(used));
    return events;
  }
}

function bad(what: string): BrokerError {
  return new BrokerError('E_PROTOCOL', `fanotify mount event stream: ${what}`);
}
