/* resolve: the libc resolver as a pod's program meets it. For each name on the command line it
 * prints "NAME ADDRESS..." from getaddrinfo (every family, as curl asks), or "NAME error: REASON".
 * It exits 0 only if every name resolved. Built static against glibc and against musl by the
 * node-local end-to-end test, so that both libcs' stub resolvers (search list, ndots, A and AAAA
 * in parallel, TC handling) are the clients. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

int main(int argc, char **argv) {
	int failed = 0;
	for (int i = 1; i < argc; i++) {
		struct addrinfo hints, *res, *ai;
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		int rc = getaddrinfo(argv[i], NULL, &hints, &res);
		if (rc != 0) {
			printf("%s error: %s\n", argv[i], gai_strerror(rc));
			failed = 1;
			continue;
		}
		printf("%s", argv[i]);
		for (ai = res; ai != NULL; ai = ai->ai_next) {
			char buf[INET6_ADDRSTRLEN];
			const void *addr = ai->ai_family == AF_INET
				? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
				: (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			if (inet_ntop(ai->ai_family, addr, buf, sizeof buf) != NULL)
				printf(" %s", buf);
		}
		printf("\n");
		freeaddrinfo(res);
	}
	return failed;
}
