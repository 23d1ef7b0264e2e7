/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small SQL helpers shared by the install script's functions.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "miscadmin.h"

PG_FUNCTION_INFO_V1(eventbus_caller);

/*
 * SQL eventbus._caller(): the role that called, as SET ROLE left it, also
 * inside SECURITY DEFINER functions (where current_user is their owner).
 */
Datum
eventbus_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(GetOuterUserId());
}
