//! Integration tests.

mod hub_server;
