//! `bench-server --capabilities`: what a bench-server binary can run on this machine.
