//! Kernel feature probes (filled in below).
