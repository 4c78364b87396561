/* TLS settings for tls+tcp:// bus addresses (see include/evkit/tls.h). */
#include "evkit/tls.h"

#include <nng/supplemental/tls/tls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1024 * 1024) /* a certificate chain or key file, at most */

static const char *tls_cert, *tls_key, *tls_ca; /* from the flags */

void
evk_tls_option(int opt, const char *file)
{
	if (opt == EVK_OPT_TLS_CERT)
		tls_cert = file;
	else if (opt == EVK_OPT_TLS_KEY)
		tls_key = file;
	else if (opt == EVK_OPT_TLS_CA)
		tls_ca = file;
}

/* A setting: the flag's value, else the environment's, else NULL. */
static const char *
setting(const char *flag, const char *env)
{
	const char *v = flag ? flag : getenv(env);
	return v && *v ? v : NULL;
}

bool
evk_tls_url(const char *url)
{
	return strncmp(url, "tls+tcp://", 10) == 0;
}

/* The text of a PEM file (malloc'ed, NUL-terminated), or NULL. */
static char *
read_pem(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t n = 0;

	if (f == NULL)
		return NULL;
	if ((text = malloc(PEM_MAX + 1)) != NULL) {
		n = fread(text, 1, PEM_MAX + 1, f);
		if (ferror(f) || n > PEM_MAX || memchr(text, '\0', n)) {
			free(text);
			text = NULL;
		} else {
			text[n] = '\0';
		}
	}
	fclose(f);
	return text;
}

/* Loads cert and key (two PEM files) as cfg's own certificate. */
static int
own_cert(nng_tls_config *cfg, const char *cert, const char *key)
{
	char *c = read_pem(cert), *k = read_pem(key);
	int rv = c && k ? nng_tls_config_own_cert(cfg, c, k, NULL) : NNG_ENOENT;
	if (rv == NNG_ECRYPTO)
		rv = NNG_EINVAL; /* not a certificate and key that belong together */
	free(c);
	if (k) {
		/* not memset: a store before free may be left out by the
		 * compiler, and the key would stay in freed memory */
		explicit_bzero(k, strlen(k));
		free(k);
	}
	return rv;
}

/* A config for mode with this process's files; NULL cert/key are left
 * out (a client without a certificate, which a hub will refuse). */
static int
make_config(nng_tls_config **out, nng_tls_mode mode, const char **why)
{
	const char *cert = setting(tls_cert, "EVBUS_TLS_CERT");
	const char *key = setting(tls_key, "EVBUS_TLS_KEY");
	const char *ca = setting(tls_ca, "EVBUS_TLS_CA");
	nng_tls_config *cfg;
	int rv;

	*why = NULL;
	if (mode == NNG_TLS_MODE_SERVER && (cert == NULL || key == NULL || ca == NULL)) {
		*why = "a tls+tcp:// hub needs --tls-cert, --tls-key and --tls-ca";
		return NNG_EINVAL;
	}
	if (mode == NNG_TLS_MODE_CLIENT && ca == NULL) {
		*why = "a tls+tcp:// address needs --tls-ca to check the hub";
		return NNG_EPEERAUTH;
	}
	if ((cert == NULL) != (key == NULL)) {
		*why = "--tls-cert and --tls-key go together";
		return NNG_EINVAL;
	}
	if ((rv = nng_tls_config_alloc(&cfg, mode)) != 0)
		return rv;
	if (ca && (rv = nng_tls_config_ca_file(cfg, ca)) != 0)
		*why = "cannot load the CA file (--tls-ca)";
	else if (cert && (rv = own_cert(cfg, cert, key)) != 0)
		*why = "cannot load the certificate or key (--tls-cert, --tls-key)";
	else if ((rv = nng_tls_config_auth_mode(cfg, ca ? NNG_TLS_AUTH_MODE_REQUIRED
							 : NNG_TLS_AUTH_MODE_NONE)) != 0)
		*why = "cannot set the TLS authentication mode";
	if (rv != 0) {
		nng_tls_config_free(cfg);
		return rv;
	}
	*out = cfg;
	return 0;
}

int
evk_tls_dial(nng_socket s, const char *url, int flags)
{
	nng_dialer d;
	nng_tls_config *cfg;
	const char *why;
	int rv;

	if (!evk_tls_url(url))
		return nng_dial(s, url, NULL, flags);
	if ((rv = nng_dialer_create(&d, s, url)) != 0)
		return rv;
	if ((rv = make_config(&cfg, NNG_TLS_MODE_CLIENT, &why)) == 0) {
		rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
		nng_tls_config_free(cfg); /* the dialer holds its own reference */
	}
	if (rv == 0)
		rv = nng_dialer_start(d, flags);
	if (rv != 0)
		nng_dialer_close(d);
	/* An evkit hub requires a client certificate it can verify: a client
	 * without one, or with one its CA did not sign, sees its handshake
	 * cut short. nng reports the alert as a crypto error when it reads it
	 * first, and as a lost connection when the hub's close comes first
	 * (a matter of timing on a loaded machine). Either way it is a
	 * refusal: say what it is. */
	if (rv == NNG_ECLOSED || rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT)
		rv = NNG_EPEERAUTH;
	return rv;
}

int
evk_tls_listener(nng_listener l, const char **why)
{
	nng_tls_config *cfg;
	int rv = make_config(&cfg, NNG_TLS_MODE_SERVER, why);
	if (rv != 0)
		return rv;
	rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg);
	nng_tls_config_free(cfg);
	return rv;
}

int
evk_tls_web_config(nng_tls_config **out, const char **why)
{
	const char *cert = setting(tls_cert, "EVBUS_TLS_CERT");
	const char *key = setting(tls_key, "EVBUS_TLS_KEY");
	nng_tls_config *cfg;
	int rv;

	*out = NULL;
	*why = NULL;
	if (cert == NULL && key == NULL)
		return 0; /* no identity: the caller serves in the clear */
	if ((cert == NULL) != (key == NULL)) {
		*why = "--tls-cert and --tls-key go together";
		return NNG_EINVAL;
	}
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0)
		return rv;
	if ((rv = own_cert(cfg, cert, key)) != 0)
		*why = "cannot load the certificate or key (--tls-cert, --tls-key)";
	else if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE)) != 0)
		*why = "cannot set the TLS authentication mode";
	if (rv != 0) {
		nng_tls_config_free(cfg);
		return rv;
	}
	*out = cfg;
	return 0;
}
