/*-------------------------------------------------------------------------
 *
 * access.h
 *	  Who may do what with a subscription (access.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_ACCESS_H
#define EB_ACCESS_H

#include "postgres.h"

/* The rights on a subscription, each wider than none of the others. */
typedef enum EbRight
{
	EB_RIGHT_CONSUME,			/* poll, ack, nack, extend_lease */
	EB_RIGHT_MANAGE,			/* alter, pause, resume, seek, redrive, purge, unsubscribe */
	EB_RIGHT_OWN				/* grant, revoke, give away: the owner's alone */
} EbRight;

/* Who holds rights on a subscription (its columns owner, consumers, managers). */
typedef struct EbRights
{
	Oid			owner;
	int			nconsumers;
	Oid		   *consumers;
	int			nmanagers;
	Oid		   *managers;
} EbRights;

/* The user a consume function runs as, to put back when it returns. */
typedef struct EbUserSave
{
	Oid			userid;
	int			sec_context;
} EbUserSave;

extern bool EbHasRight(const EbRights *rights, Oid role, EbRight right);
extern void EbCheckRight(const EbRights *rights, const char *sub_name, Oid role, EbRight right);
extern void EbBecomeOwner(EbUserSave *save);
extern void EbRestoreUser(const EbUserSave *save);

#endif							/* EB_ACCESS_H */
