//! Where a cell's programs run: this machine, network namespaces, or hosts reached by a launch prefix.

pub mod hosts;
pub mod netns;
pub mod network;
