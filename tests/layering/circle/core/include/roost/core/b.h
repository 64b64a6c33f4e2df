// A fixture for scripts/check-circles.sh.
#pragma once

#include <roost/core/a.h>

struct B : A {};
