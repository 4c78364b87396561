/* rawreq: sends the bytes of FILE (or stdin) to the hub as one request
 * and prints the reply's kind and body, so tests can feed the hub hostile
 * frames no evkit program would send.
 *
 *   rawreq URL [FILE [TIMEOUT_MS [FILE...]]]
 *
 * Further FILEs go after the first on the same connection, each once the
 * reply to the one before it came. Exit 0 with every reply, 69 without.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>

/* Sends the bytes of path (stdin when NULL) on s and prints the reply.
 * 0, 69 (no reply) or 74 (unreadable input). */
static int
exchange(nng_socket s, const char *path)
{
	static char buf[8 << 20];
	nng_msg *req, *rep;
	FILE *in = stdin;
	size_t n;
	int rv;

	if (path && (in = fopen(path, "rb")) == NULL) {
		perror(path);
		return 74;
	}
	n = fread(buf, 1, sizeof(buf), in);
	if (ferror(in)) {
		perror("read");
		return 74;
	}
	if (in != stdin)
		fclose(in);
	if ((rv = nng_msg_alloc(&req, 0)) != 0 || (rv = nng_msg_append(req, buf, n)) != 0) {
		fprintf(stderr, "rawreq: %s\n", nng_strerror(rv));
		return 69;
	}
	if ((rv = nng_sendmsg(s, req, 0)) != 0) {
		nng_msg_free(req);
		fprintf(stderr, "rawreq: send: %s\n", nng_strerror(rv));
		return 69;
	}
	if ((rv = nng_recvmsg(s, &rep, 0)) != 0) {
		fprintf(stderr, "rawreq: receive: %s\n", nng_strerror(rv));
		return 69;
	}
	const unsigned char *b = nng_msg_body(rep);
	size_t len = nng_msg_len(rep);
	if (len == 0) {
		printf("(empty)\n");
	} else if (b[0] == 'E' || b[0] == 'S') {
		printf("%c %.*s\n", b[0], (int)(len - 1), (const char *)b + 1);
	} else {
		printf("%c %zu bytes\n", b[0], len);
	}
	nng_msg_free(rep);
	return 0;
}

int
main(int argc, char **argv)
{
	nng_socket s;
	int rv;

	int timeout = argc > 3 ? atoi(argv[3]) : 10000;

	if (argc < 2) {
		fprintf(stderr, "usage: rawreq URL [FILE [TIMEOUT_MS [FILE...]]]\n");
		return 2;
	}
	if ((rv = nng_req0_open(&s)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout)) != 0 ||
	    (rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 0)) != 0 ||
	    (rv = nng_dial(s, argv[1], NULL, 0)) != 0) {
		fprintf(stderr, "rawreq: %s\n", nng_strerror(rv));
		return 69;
	}
	int status = exchange(s, argc >= 3 ? argv[2] : NULL);
	for (int i = 4; status == 0 && i < argc; i++)
		status = exchange(s, argv[i]);
	if (fflush(stdout) != 0)
		return 74;
	/* Without a reply, the socket is left to the exit: nng 1.5.2's
	 * nng_close can hang while REQ redials a hub that dropped it. */
	if (status == 0)
		nng_close(s);
	return status;
}
