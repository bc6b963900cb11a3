//! The conformance battery, once per way of serving the same handler: the standalone
//! server, hyper, the tower layer, axum and actix-web.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

macro_rules! on_server {
    ($($kind:ident),*) => {$(
        mod $kind {
            crate::echo_battery!(stringify!($kind));
        }
    )*};
}

on_server!(standalone, hyper, tower, axum, actix);
