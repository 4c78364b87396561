/* rawreq: sends the bytes of FILE (or stdin) to the hub as one request
 * and prints the reply's kind and body, so tests can feed the hub hostile
 * frames no evkit program would send.
 *
 *   rawreq URL [FILE [TIMEOUT_MS [FILE...]]]
 *
 * Further FILEs go after the first on the same connection, each once the
 * reply to the one before it came; with RAWREQ_PIPELINE set in the
 * environment, all are sent at once (one REQ context each) and the replies
 * printed in order. Exit 0 with every reply, 69 without.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>

/* The bytes of path (stdin when NULL) as a message; 0, 69 or 74. */
static int
load(const char *path, nng_msg **msg)
{
	static char buf[8 << 20];
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
	if ((rv = nng_msg_alloc(msg, 0)) != 0 || (rv = nng_msg_append(*msg, buf, n)) != 0) {
		fprintf(stderr, "rawreq: %s\n", nng_strerror(rv));
		return 69;
	}
	return 0;
}

static void
print_reply(nng_msg *rep)
{
	const unsigned char *b = nng_msg_body(rep);
	size_t len = nng_msg_len(rep);
	if (len == 0)
		printf("(empty)\n");
	else if (b[0] == 'E' || b[0] == 'S')
		printf("%c %.*s\n", b[0], (int)(len - 1), (const char *)b + 1);
	else
		printf("%c %zu bytes\n", b[0], len);
	nng_msg_free(rep);
}

/* Sends path on s and prints the reply: 0, 69 (no reply) or 74. */
static int
exchange(nng_socket s, const char *path)
{
	nng_msg *req, *rep;
	int rv = load(path, &req);

	if (rv != 0)
		return rv;
	if ((rv = nng_sendmsg(s, req, 0)) != 0) {
		nng_msg_free(req);
		fprintf(stderr, "rawreq: send: %s\n", nng_strerror(rv));
		return 69;
	}
	if ((rv = nng_recvmsg(s, &rep, 0)) != 0) {
		fprintf(stderr, "rawreq: receive: %s\n", nng_strerror(rv));
		return 69;
	}
	print_reply(rep);
	return 0;
}

/* Sends every path at once, one context each, then prints the replies in
 * order: 0, 69 or 74. */
static int
pipeline(nng_socket s, char **paths, int n, int timeout)
{
	nng_ctx ctx[16];
	nng_aio *aio[16];
	int rv;

	if (n > 16)
		n = 16;
	for (int i = 0; i < n; i++) {
		nng_msg *req;
		if ((rv = load(paths[i], &req)) != 0)
			return rv;
		if (nng_ctx_open(&ctx[i], s) != 0 || nng_aio_alloc(&aio[i], NULL, NULL) != 0)
			return 69;
		nng_aio_set_timeout(aio[i], timeout);
		nng_aio_set_msg(aio[i], req);
		nng_ctx_send(ctx[i], aio[i]);
	}
	for (int i = 0; i < n; i++) {
		nng_aio_wait(aio[i]);
		if ((rv = nng_aio_result(aio[i])) != 0) {
			fprintf(stderr, "rawreq: send: %s\n", nng_strerror(rv));
			return 69;
		}
		nng_ctx_recv(ctx[i], aio[i]);
		nng_aio_wait(aio[i]);
		if ((rv = nng_aio_result(aio[i])) != 0) {
			fprintf(stderr, "rawreq: receive: %s\n", nng_strerror(rv));
			return 69;
		}
		print_reply(nng_aio_get_msg(aio[i]));
		nng_aio_free(aio[i]);
	}
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
	int status;
	if (getenv("RAWREQ_PIPELINE") && argc > 3 + 16) {
		fprintf(stderr, "rawreq: at most 16 files at once\n");
		return 2;
	}
	if (getenv("RAWREQ_PIPELINE") && argc >= 3) {
		char *paths[16];
		int n = 0;
		paths[n++] = argv[2];
		for (int i = 4; i < argc && n < 16; i++)
			paths[n++] = argv[i];
		status = pipeline(s, paths, n, timeout);
	} else {
		status = exchange(s, argc >= 3 ? argv[2] : NULL);
		for (int i = 4; status == 0 && i < argc; i++)
			status = exchange(s, argv[i]);
	}
	if (fflush(stdout) != 0)
		return 74;
	/* Without a reply, the socket is left to the exit: nng 1.5.2's
	 * nng_close can hang while REQ redials a hub that dropped it. */
	if (status == 0)
		nng_close(s);
	return status;
}
