/* Closing nng sockets without hanging: nng 1.5.2's nng_close can wait
 * forever for a connection's teardown (nanomsg/nng#1543, fixed in later
 * nng). Defined in lib/bus_conn.c; used by the nng bus client and by
 * evbusd. */
#ifndef EVKIT_NNGCLOSE_H
#define EVKIT_NNGCLOSE_H

#include <nng/nng.h>
#include <stdbool.h>

/* Closes n (1 or 2) sockets, in order, on a thread of its own, waiting at
 * most 2 s; false when they were still closing then: nng may still run
 * their callbacks, so whatever those use must stay allocated (the exit of
 * the process ends the closing). */
bool evk_nng_close_sockets(const nng_socket *socks, int n);

#endif
