/* lib/bus_conn.c, lib/bus_pub.c and lib/bus_sub.c are the nng client of
 * evbusd, one of the two implementations behind include/evkit/bus.h: these
 * names make its functions and types evk_nng_*, and lib/bus_pick.c picks it
 * or lib/nats_*.c by the URL's scheme. Included by those three files only,
 * before anything else; it also declares what they share (below). */
#ifndef EVKIT_BUS_NNG_H
#define EVKIT_BUS_NNG_H

#define evk_pub evk_nng_pub
#define evk_sub evk_nng_sub
#define evk_bus_resolve evk_nng_bus_resolve
#define evk_bus_fanout_url evk_nng_bus_fanout_url
#define evk_pub_open evk_nng_pub_open
#define evk_pub_add evk_nng_pub_add
#define evk_pub_event evk_nng_pub_event
#define evk_pub_flush evk_nng_pub_flush
#define evk_pub_sync evk_nng_pub_sync
#define evk_pub_acked evk_nng_pub_acked
#define evk_pub_last_seq evk_nng_pub_last_seq
#define evk_pub_close evk_nng_pub_close
#define evk_publish evk_nng_publish
#define evk_sub_open evk_nng_sub_open
#define evk_sub_next evk_nng_sub_next
#define evk_pub_why evk_nng_pub_why
#define evk_pub_set_producer evk_nng_pub_set_producer
#define evk_pub_add_seq evk_nng_pub_add_seq
#define evk_pub_dropped evk_nng_pub_dropped
#define evk_sub_why evk_nng_sub_why
#define evk_sub_buffered evk_nng_sub_buffered
#define evk_sub_gap evk_nng_sub_gap
#define evk_sub_start_head evk_nng_sub_start_head
#define evk_sub_malformed evk_nng_sub_malformed
#define evk_sub_refilled evk_nng_sub_refilled
#define evk_sub_close evk_nng_sub_close
#define evk_bus_status evk_nng_bus_status

#include "evkit/bus.h"
#include "evkit/nngclose.h" /* evk_nng_close_sockets */

#include "bus_impl.h"

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>

/* Private to lib/: none of these is exported from libevkit.so. */
#pragma GCC visibility push(hidden)

/* ---- shared by the nng client's files (defined in lib/bus_conn.c) ---- */

/* Size of a refusal's text buffer (the why of struct evk_pub, struct
 * evk_sub and evk_nng_refusal). */
#define WHY_MAX 256

/* Maps an nng error (0 included) to an EVK_* code. */
int evk_nng_err(int rv);

/* An 'E' or 'F' reply's error code, its text copied to why[0..WHY_MAX);
 * EVK_EPROTO (and an empty why) for anything else. */
int evk_nng_refusal(const void *b, size_t n, char *why);

/* Opens a REQ socket *s dialled to the hub at url (TLS as configured): no
 * resend, large frames, EVK_ACK_TIMEOUT_MS send/receive timeouts. EVK_OK,
 * or an EVK_* code with nothing left open. */
int evk_nng_req_open(nng_socket *s, const char *url);

/* Sends req (consumed either way) on s and waits for *reply (the caller's
 * to free on EVK_OK). */
int evk_nng_request(nng_socket s, nng_msg *req, nng_msg **reply);

#pragma GCC visibility pop

#endif
