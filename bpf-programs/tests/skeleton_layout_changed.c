// Library fixture: skeleton_layout.c with struct record changed (port widened and moved before
// kind), for the stale-skeleton test.
#define LAYOUT_CHANGED
#include "skeleton_layout.c"
