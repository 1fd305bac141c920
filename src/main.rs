//! The `voxpipe` command line.

fn main() {}
