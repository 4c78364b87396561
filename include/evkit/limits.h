/* Bounds shared by every evkit program: one place for every size limit. */
#ifndef EVKIT_LIMITS_H
#define EVKIT_LIMITS_H

#define EVK_MAX_LINE_DEFAULT (1024 * 1024) /* one input line, --max-line */
#define EVK_TOPIC_MAX 255                  /* bytes in a topic */
#define EVK_EVENT_MAX 64                   /* bytes in an event name */
#define EVK_TS_LEN 27                      /* 2026-11-22T22:01:02.345678Z */
#define EVK_FRAME_TARGET (256 * 1024)      /* events are framed up to this */
#define EVK_FRAME_MAX (4 * 1024 * 1024 + 4096) /* largest frame accepted */
#define EVK_PUB_WINDOW 8                   /* frames in flight per publisher */
#define EVK_REFILL_EVENTS 4096             /* events per refill reply */
#define EVK_SUB_QUEUE_FRAMES 16            /* frames queued per subscriber (4 MiB) */
#define EVK_HEARTBEAT_MS 100               /* hub heartbeat period */
#define EVK_CONNECT_TIMEOUT_MS 2000        /* no hub: give up after this */
#define EVK_ACK_TIMEOUT_MS 10000           /* hub silent: give up after this */
#define EVK_RETAIN_DEFAULT 1000000         /* events the hub's log keeps */

#endif
