/*
 * frame.h: the 4-byte big-endian length that starts every frame, on the
 * broker socket (docs/protocol.md), the zygote's pipes and the netrelay's.
 */
#ifndef UB_FRAME_H
#define UB_FRAME_H

#include <stdint.h>

#define UB_FRAME_HEADER 4

static inline uint32_t ub_frame_len(const unsigned char p[UB_FRAME_HEADER])
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void ub_frame_put_len(unsigned char p[UB_FRAME_HEADER], uint32_t len)
{
	p[0] = (unsigned char)(len >> 24);
	p[1] = (unsigned char)(len >> 16);
	p[2] = (unsigned char)(len >> 8);
	p[3] = (unsigned char)len;
}

static inline uint64_t ub_be64_get(const unsigned char p[8])
{
	return (uint64_t)ub_frame_len(p) << 32 | ub_frame_len(p + 4);
}

static inline void ub_be64_put(unsigned char p[8], uint64_t v)
{
	ub_frame_put_len(p, (uint32_t)(v >> 32));
	ub_frame_put_len(p + 4, (uint32_t)v);
}

#endif /* UB_FRAME_H */
