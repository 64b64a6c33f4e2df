#include "roost/core/a.h"

#include <roost/core/b.h>

B make_b() { return B{}; }
