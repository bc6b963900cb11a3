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

/// The battery's client checks over HTTP/2 (extended CONNECT), on every server that
/// speaks it.
mod over_http2 {
    macro_rules! on_http2_server {
        ($($kind:ident),*) => {$(
            mod $kind {
                crate::echo_battery_http2!(stringify!($kind));
            }
        )*};
    }

    on_http2_server!(standalone, hyper, tower, axum);
}
