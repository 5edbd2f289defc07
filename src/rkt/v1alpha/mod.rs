//! rkt's gRPC API, package `v1alpha`, generated at build time from `api.proto` beside this file: the messages, the
//! `PublicApiClient` (in [`public_api_client`]) and the `PublicApi` server trait (in [`public_api_server`]).
//! The RPC paths are rkt's own, such as `/v1alpha.PublicAPI/GetInfo`.

tonic::include_proto!("v1alpha");
