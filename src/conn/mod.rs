//! A client connection, below the requests on it: its place under `--max-conns` and
//! what it carries from one request to the next (`conn_info`, the client's address
//! as backends are told it in `client_addr`), the HTTP/1 reads
//! followed for the framing actix-http misreads (`watched`, `framing`), and nothing
//! running after an answer that closed it (`closing`).

pub mod client_addr;
pub mod closing;
pub mod conn_info;
pub mod framing;
pub mod watched;
