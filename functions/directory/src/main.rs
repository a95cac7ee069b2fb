//! The `directory` Lambda: build everything once, then serve API Gateway requests, each bounded by
//! its invocation's deadline (R-OPS-2).

m365_lambda::api_main!(directory::handle);
