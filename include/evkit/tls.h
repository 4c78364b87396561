/* TLS with client certificates for tls+tcp:// bus addresses (nng's TLS
 * transport, mbedTLS in Debian's nng). The settings are the process's:
 * --tls-cert/--tls-key/--tls-ca, else $EVBUS_TLS_CERT/KEY/CA. */
#ifndef EVKIT_TLS_H
#define EVKIT_TLS_H

#include <nng/nng.h>
#include <stdbool.h>

/* The getopt values of --tls-cert, --tls-key and --tls-ca (evkit/flags.h's
 * EVK_FLAGS_TLS declares them, evk_flags_next hands them to
 * evk_tls_option). */
enum { EVK_OPT_TLS_CERT = 0x7c01, EVK_OPT_TLS_KEY, EVK_OPT_TLS_CA };

/* Records one of those options (the file is read when used). */
void evk_tls_option(int opt, const char *file);

/* True when url is a tls+tcp:// address. */
bool evk_tls_url(const char *url);

/* Dials url on s as nng_dial(s, url, NULL, flags) does, with this
 * process's certificate, key and CA for a tls+tcp:// url (the hub's
 * certificate must be signed by the CA). Returns an nng error. */
int evk_tls_dial(nng_socket s, const char *url, int flags);

/* Sets up listener l (created on a tls+tcp:// url) to require a client
 * certificate signed by the CA, presenting this process's certificate.
 * An nng error, with *why naming the missing setting when one is. */
int evk_tls_listener(nng_listener l, const char **why);

struct nng_tls_config;

/* A server config for an HTTPS page with this process's certificate and
 * key (the identity it has on the bus), asking no client certificate (a
 * browser has none): *out is the caller's (nng_tls_config_free), or NULL
 * when no certificate or key is set. An nng error, with *why saying what. */
int evk_tls_web_config(struct nng_tls_config **out, const char **why);

#endif
