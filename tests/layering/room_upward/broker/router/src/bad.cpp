// A fixture for scripts/check-layering.sh: a room includes a header of a room above it.
#include <roost/broker/mesh.h>
