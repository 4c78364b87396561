/* bareconn: opens a connection to an ipc (unix socket) or tcp address and
 * closes it at once, without a word of the SP handshake, the way a
 * monitoring script, socat or a port scanner probes a socket.
 *
 *   bareconn URL [COUNT]
 *
 * URL is ipc://PATH or tcp://HOST:PORT; COUNT connections (default 1),
 * one after another. Exit 0 when every connect succeeded, 69 when one was
 * refused, 77 when permission was denied, 2 on a usage error.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int
connect_once(const char *url)
{
	int fd = -1, rc = 0;

	if (strncmp(url, "ipc://", 6) == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (strlen(url + 6) >= sizeof(sa.sun_path)) {
			fprintf(stderr, "bareconn: path too long\n");
			return 2;
		}
		strcpy(sa.sun_path, url + 6);
		if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
			rc = errno == EACCES ? 77 : 69;
	} else if (strncmp(url, "tcp://", 6) == 0) {
		char host[256];
		const char *colon = strrchr(url + 6, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
		if (colon == NULL || (size_t)(colon - (url + 6)) >= sizeof(host)) {
			fprintf(stderr, "bareconn: bad address '%s'\n", url);
			return 2;
		}
		memcpy(host, url + 6, (size_t)(colon - (url + 6)));
		host[colon - (url + 6)] = '\0';
		if (getaddrinfo(host[0] ? host : "127.0.0.1", colon + 1, &hints, &ai) != 0 ||
		    (fd = socket(ai->ai_family, SOCK_STREAM, 0)) < 0 ||
		    connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
			rc = 69;
		if (ai)
			freeaddrinfo(ai);
	} else {
		fprintf(stderr, "bareconn: want ipc:// or tcp://, not '%s'\n", url);
		return 2;
	}
	if (rc != 0)
		fprintf(stderr, "bareconn: %s: %s\n", url, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}

int
main(int argc, char **argv)
{
	long count = 1;

	if (argc < 2 || argc > 3 || (argc == 3 && (count = atol(argv[2])) < 1)) {
		fprintf(stderr, "usage: bareconn URL [COUNT]\n");
		return 2;
	}
	for (long i = 0; i < count; i++) {
		int rc = connect_once(argv[1]);
		if (rc != 0)
			return rc;
	}
	return 0;
}
