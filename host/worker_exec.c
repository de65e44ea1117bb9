/*
 * worker_exec.c - how a worker process comes to be: the host spawns a
 * fresh copy of its own program, and that copy turns into a worker before
 * main() runs.
 *
 * Why exec and not a bare fork: the host has threads (the store's writer,
 * flusher and checkpointer).  A fork copies only the forking thread, with
 * every lock the others held at that instant still held and nobody left to
 * release it; the child's first malloc, stdio call or sanitizer allocation
 * that needs such a lock waits forever.  The fuzzer caught workers hanging
 * this way.  posix_spawn (a vfork and exec, nothing else in between) gives
 * the worker a clean process image, and it inherits only what is set up
 * here: the channel as fd 3, stdin from /dev/null, stdout and stderr to the
 * output pipe the host reads (worker_output.h), the host's stderr as fd 4
 * for the worker's own log lines, its own process group, default signal
 * dispositions and an empty signal mask.  The program is /proc/self/exe, the very file the host
 * runs even if a package upgrade has since replaced it on disk, so host and
 * worker always speak the same protocol.
 *
 * The spawned copy finds CAGEHOST_WORKER in its environment; the
 * constructor below reads the settings from it, removes it (plugins never
 * see it) and runs worker_main().  Any program that links the worker pool
 * (cagehost, the fuzz harness) can therefore be a worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define WORKER_ENV "CAGEHOST_WORKER"
#define WORKER_CHANNEL_FD 3
#define WORKER_LOG_FD 4

extern char **environ;

/* The environment of a new worker: the host's, plus the settings. */
static char **worker_environment(const char *settings)
{
	size_t n = 0, i, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof *env);
	if (!env)
		return NULL;
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], WORKER_ENV "=", sizeof WORKER_ENV))
			env[k++] = environ[i];
	env[k++] = (char *)settings;
	env[k] = NULL;
	return env;
}

pid_t worker_spawn(int channel_fd, int output_fd, const struct worker_limits *limits,
		   int log_level)
{
	/* above the numbers they go to, so that no dup2 below overwrites one */
	int channel = fcntl(channel_fd, F_DUPFD_CLOEXEC, 10);
	int output = fcntl(output_fd, F_DUPFD_CLOEXEC, 10);
	char settings[256];
	char *argv[] = { "cagehost-worker", NULL };
	posix_spawn_file_actions_t files;
	posix_spawnattr_t attr;
	sigset_t all, none;
	char **env;
	pid_t pid = -1;
	int rc;

	snprintf(settings, sizeof settings, WORKER_ENV "=parent=%d memory=%zu cpu_ms=%lld "
		 "files=%d log=%d", (int)getpid(), limits->memory_bytes,
		 (long long)limits->cpu_ms, limits->files, log_level);
	env = worker_environment(settings);
	if (!env || channel < 0 || output < 0) {
		free(env);
		if (channel >= 0)
			close(channel);
		if (output >= 0)
			close(output);
		errno = env ? EMFILE : ENOMEM;
		return -1;
	}
	sigfillset(&all);
	sigemptyset(&none);
	posix_spawn_file_actions_init(&files);
	posix_spawnattr_init(&attr);
	/* the channel becomes fd 3 (a dup2 onto itself clears close-on-exec) */
	rc = posix_spawn_file_actions_adddup2(&files, channel, WORKER_CHANNEL_FD);
	if (!rc)
		rc = posix_spawn_file_actions_addopen(&files, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	/* the worker's own log lines: the host's stderr */
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&files, STDERR_FILENO, WORKER_LOG_FD);
	/* what plugins print: the pipe the host reads */
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&files, output, STDOUT_FILENO);
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&files, output, STDERR_FILENO);
	if (!rc)
		rc = posix_spawn_file_actions_addclosefrom_np(&files, WORKER_LOG_FD + 1);
	/* its own process group: whatever a plugin forks dies with it */
	if (!rc)
		rc = posix_spawnattr_setpgroup(&attr, 0);
	if (!rc)
		rc = posix_spawnattr_setsigdefault(&attr, &all);
	if (!rc)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (!rc)
		rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETSIGMASK);
	if (!rc)
		rc = posix_spawn(&pid, "/proc/self/exe", &files, &attr, argv, env);
	posix_spawn_file_actions_destroy(&files);
	posix_spawnattr_destroy(&attr);
	free(env);
	close(channel);
	close(output);
	if (rc) {
		errno = rc;
		return -1;
	}
	return pid;
}

/* The signal the kernel sends the worker when the host dies
 * (PR_SET_PDEATHSIG).  Not SIGTERM, which keeps its default action: a
 * plugin or an operator that sends it ends the worker, and the host names
 * the signal (and kills the group itself). */
#define HOST_DEATH_SIGNAL SIGRTMAX

/* The host died: take the worker's whole process group along. */
static void on_host_death(int sig)
{
	(void)sig;
	if (getpgrp() == getpid())
		kill(0, SIGKILL);
	_exit(1);
}

static void limit(int resource, rlim_t value)
{
	struct rlimit rl = { value, value };

	if (value && setrlimit(resource, &rl) < 0)
		log_warning("worker: setrlimit(%d): %s", resource, strerror(errno));
}

/* Runs before main() in every program that links this file. */
__attribute__((constructor))
static void become_worker_if_spawned(void)
{
	const char *settings = getenv(WORKER_ENV);
	unsigned long long memory;
	long long cpu_ms;
	int parent, files, level;
	struct stat st;

	if (!settings)
		return;
	if (sscanf(settings, "parent=%d memory=%llu cpu_ms=%lld files=%d log=%d", &parent,
		   &memory, &cpu_ms, &files, &level) != 5 ||
	    fstat(WORKER_CHANNEL_FD, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "cagehost-worker: started without a host (%s=%s)\n", WORKER_ENV,
			settings);
		_exit(WORKER_EXIT_CHANNEL_LOST);
	}
	unsetenv(WORKER_ENV);
	log_set_level((enum log_level)level);
	prctl(PR_SET_NAME, "cagehost-worker");
	signal(HOST_DEATH_SIGNAL, on_host_death);
	prctl(PR_SET_PDEATHSIG, HOST_DEATH_SIGNAL);
	if (getppid() != parent)
		_exit(0);	/* the host died before the line above */
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer reserves terabytes of shadow address space */
	(void)memory;
#else
	limit(RLIMIT_AS, (rlim_t)memory);
#endif
	limit(RLIMIT_NOFILE, (rlim_t)files);
	log_set_fd(WORKER_LOG_FD);
	/* a line at a time: what a handler prints is in the pipe by its end */
	setvbuf(stdout, NULL, _IOLBF, 0);
	worker_main(WORKER_CHANNEL_FD, cpu_ms);
}
