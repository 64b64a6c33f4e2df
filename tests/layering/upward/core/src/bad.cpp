// Fixture for the layering check: core/ may not include the broker.
#include <roost/broker/node.h>
