/* lib/bus.c is the nng client of evbusd, one of the two implementations
 * behind include/evkit/bus.h: these names make its functions and types
 * evk_nng_*, and lib/bus_pick.c picks it or lib/nats_*.c by the URL's
 * scheme. Included by lib/bus.c only, before anything else. */
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

#include "bus_impl.h"

#endif
