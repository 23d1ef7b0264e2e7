/*
 * cloudevent.c: placeholder of the CloudEvents mapping (replaced by the
 * branch that builds to_cloudevent and publish_cloudevent).
 */
#include "eventbus.h"
#include "cloudevent.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"

const char *
EbCloudEventDefaultSource(void)
{
	return psprintf("/eventbus/%u", MyDatabaseId);
}

int
EbCloudEventAttrs(int64 event_id, const char *topic, const char *key, Datum headers,
				  bool headers_null, TimestampTz published_at, const char *source,
				  EbCeAttr *attrs)
{
	int			n = 0;

	attrs[n].name = "specversion";
	attrs[n++].value = pstrdup("1.0");
	attrs[n].name = "id";
	attrs[n++].value = psprintf("%u:" INT64_FORMAT, MyDatabaseId, event_id);
	attrs[n].name = "source";
	attrs[n++].value = pstrdup(source ? source : EbCloudEventDefaultSource());
	attrs[n].name = "type";
	attrs[n++].value = pstrdup(topic);
	attrs[n].name = "time";
	attrs[n++].value = pstrdup(timestamptz_to_str(published_at));
	attrs[n].name = "datacontenttype";
	attrs[n++].value = pstrdup("application/json");
	if (key != NULL)
	{
		attrs[n].name = "partitionkey";
		attrs[n++].value = pstrdup(key);
	}
	return n;
}
