/* The command-line client: `mecapy login|logout|fn|run|task ...`. It talks HTTP to a
 * MecaPy server (docs/api.md) and depends on base/ only. The user guide is docs/cli.md. */
#pragma once

/* Run one client verb. verb is "login", "logout", "fn", "run" or "task"; argv[0] is the
 * verb itself and the options and operands follow. Prints to stdout (results) and
 * stderr (messages) and returns the process exit code:
 *   0 success, 1 the task failed / timed out / was cancelled (or did not end in time),
 *   2 usage error, 3 HTTP, authentication or connection error.
 * Never exits the process itself. */
int mp_cli_main(const char *verb, int argc, char **argv);
