/*-------------------------------------------------------------------------
 *
 * slots_int.h
 *	  The shared slots of the per-database workers, for launcher.c and
 *	  slots.c only; others use launcher.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SLOTS_INT_H
#define EB_SLOTS_INT_H

#include "postgres.h"

#include "launcher.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

/* Databases the launcher keeps track of. */
#define EB_MAX_DATABASES	256

typedef struct EbDbSlot
{
	Oid			dboid;
	EbDbState	state;
	pid_t		pid;			/* worker, when running */
	Latch	   *latch;			/* worker's latch, when running */
	bool		start_requested;	/* CREATE EXTENSION committed */
	TimestampTz restart_at;		/* EB_DB_RESTART */
	bool		kick_all;		/* kicks overflowed: look at every subscription */
	int			nkicks;
	int32		kicks[EB_MAX_KICKS];	/* subscription ids */
	uint64		cut_requested;	/* polls that asked for a cut */
	uint64		cut_done;		/* the requests a committed cut served */
	/* Counters, for eventbus.worker_stats. */
	uint64		ticks;
	uint64		notifications;
	uint64		handler_calls;
	TimestampTz last_tick_at;
	double		last_loop_seconds;	/* the last round's work */
	double		loop_seconds;	/* all rounds' work */
	char		last_error[256];
	bool		exit_error;		/* the worker ended on an error (last_error) */
	bool		exit_sigterm;	/* the worker ended on SIGTERM */
} EbDbSlot;

typedef struct EbWorkerShared
{
	LWLock	   *lock;			/* protects everything below */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	EbDbSlot	dbs[EB_MAX_DATABASES];
} EbWorkerShared;

/* The slots, in shared memory (NULL without the preload). */
extern EbWorkerShared *WorkerShared;

extern void EbSlotsShmemRequest(void);
extern void EbSlotsShmemStartup(void);
extern EbDbSlot *EbFindSlot(Oid dboid);
extern EbDbSlot *EbFindOrAddSlot(Oid dboid);

#endif							/* EB_SLOTS_INT_H */
