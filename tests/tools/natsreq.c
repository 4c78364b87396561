/* natsreq: one request to a NATS server, its reply on stdout, so tests can
 * use the JetStream API (make a stream with other settings, read its
 * configuration) without the nats CLI.
 *
 *   natsreq nats://HOST:PORT SUBJECT [DATA]
 *
 * Exit 0 with the reply, 69 when the server cannot be reached or nothing
 * answers within 5 s.
 */
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsMsg *reply = NULL;
	natsStatus s;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: natsreq nats://HOST:PORT SUBJECT [DATA]\n");
		return 2;
	}
	const char *data = argc == 4 ? argv[3] : "";
	if ((s = natsConnection_ConnectTo(&nc, argv[1])) != NATS_OK ||
	    (s = natsConnection_Request(&reply, nc, argv[2], data, (int)strlen(data),
					5000)) != NATS_OK) {
		fprintf(stderr, "natsreq: %s: %s\n", argv[1], natsStatus_GetText(s));
		natsConnection_Destroy(nc);
		return 69;
	}
	fwrite(natsMsg_GetData(reply), 1, (size_t)natsMsg_GetDataLength(reply), stdout);
	putchar('\n');
	natsMsg_Destroy(reply);
	natsConnection_Destroy(nc);
	return 0;
}
