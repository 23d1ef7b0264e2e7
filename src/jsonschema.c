/* Placeholder: the validator is being written (src/jsonschema.h has the API). */
#include "jsonschema.h"
