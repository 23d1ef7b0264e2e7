/*-------------------------------------------------------------------------
 *
 * util.c
 *	  SQL helpers of earlier versions, kept so that their install scripts
 *	  still load with this library (the upgrade test, a database not
 *	  updated yet). ALTER EXTENSION eventbus UPDATE drops their SQL
 *	  functions.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "miscadmin.h"

PG_FUNCTION_INFO_V1(eventbus_caller);

/*
 * SQL eventbus._caller() of version 0.1.0: the role as SET ROLE left it.
 * 0.2.0 learns who called from the gate instead (access.c).
 */
Datum
eventbus_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(GetOuterUserId());
}
