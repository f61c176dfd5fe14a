//! DANE for SMTP (RFC 7672): the TLSA records of the next hops, looked up through a
//! DNSSEC-validating resolver, decide whether TLS is mandatory and how the server is
//! authenticated. See `docs/dane.md`.

pub(crate) mod tlsa;
pub(crate) mod verify;

pub(crate) use tlsa::HostPolicy;
