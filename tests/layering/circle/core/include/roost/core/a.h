// A fixture for scripts/check-circles.sh: a.cpp needs b.h, which needs a.h back.
#pragma once

struct A {};
