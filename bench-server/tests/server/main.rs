//! bench-server end to end: the real binary on 127.0.0.1, port 0, for every backend, trigger and
//! accept strategy it supports, plus the faults a benchmark server must survive. One test binary:
//! the topics share the helpers in `common` and a binary each would link them again.

mod calls;
mod capabilities;
mod common;
mod completion_abuse;
mod echo;
mod limits;
mod refusals;
mod wakeups;
mod work;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use poller::BackendKind;
