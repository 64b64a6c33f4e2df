// A fixture: the mesh room stands above the router room.
#pragma once
