/* The wire format between the hub and its clients (internal to evkit).
 *
 * Requests (REQ → hub's REP), first byte is the kind:
 *   'P' lines...                 publish; lines are canonical without seq
 *   'R' u64 from, u32 max        replay events with seq >= from
 *   'S'                          status
 * Replies:
 *   'A' u64 first, u32 count     publish acknowledged (committed)
 *   'D' u64 first, u32 count, u64 head, u64 oldest, lines...   replay
 *   'S' json                     status
 *   'E' text                     refused
 * Fan-out (hub's PUB → SUB):
 *   'D' u64 first, u32 count, u64 head, u64 oldest, lines...   events
 *   'H' u64 head                 heartbeat, every EVK_HEARTBEAT_MS
 * Integers are big-endian; lines are '\n'-terminated. */
#ifndef EVKIT_PROTO_H
#define EVKIT_PROTO_H

#include <stdint.h>
#include <string.h>

#define EVK_MSG_PUBLISH 'P'
#define EVK_MSG_REPLAY 'R'
#define EVK_MSG_STATUS 'S'
#define EVK_MSG_ACK 'A'
#define EVK_MSG_EVENTS 'D'
#define EVK_MSG_ERROR 'E'
#define EVK_MSG_HEARTBEAT 'H'

#define EVK_EVENTS_HDR (1 + 8 + 4 + 8 + 8)

static inline void
evk_put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline void
evk_put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint64_t
evk_get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static inline uint32_t
evk_get_u32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | p[i];
	return v;
}

#endif
