// Fixture for the layering check: durable/ may not include channels/, its sibling.
#include <roost/channels/hub.h>
