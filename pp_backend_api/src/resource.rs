//! One served route: its path, method, who may use it and its handler ([`Served`]), and the
//! resource that serves it behind the guard, the rate limits and the panic catcher ([`only`]).
//! Every route table (the API's in [`crate::routes`], the dashboard's) is made of these.

use actix_web::body::BoxBody;
use actix_web::dev::{HttpServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Next, from_fn};
use actix_web::{Error, HttpRequest, HttpResponse, Route, web};

use crate::auth::guard::{Admission, admit};
use crate::auth::{Access, Mode};
use crate::error::{ErrorBody, ErrorResponse};
use crate::middleware::{RouteLabel, catch_panics};
use crate::rate_limit::{Charge, Traffic, charge_request};

/// One route: its path, its method, who may use it, and its handler.
pub struct Served {
    pub path: &'static str,
    pub method: Method,
    pub access: Access,
    pub route: Route,
}

/// Shorthand for a [`Served`].
pub fn served(path: &'static str, method: Method, access: Access, route: Route) -> Served {
    Served {
        path,
        method,
        access,
        route,
    }
}

/// A resource that serves `route` for `method` and answers 405, with the `Allow` header RFC 9110
/// asks for, to every other method. Its requests pass the guard ([`admit`]: who may, given
/// `access`, under the API's `mode`), then count against the rate limits the access is subject
/// to, and its handler's panics are answered 500 ([`catch_panics`]): all in [`gate`].
pub fn only(
    path: &'static str,
    method: Method,
    access: Access,
    mode: Mode,
    route: Route,
) -> impl HttpServiceFactory + use<> {
    let traffic = access.traffic(&method);
    let allow =
        HeaderValue::from_str(method.as_str()).expect("a method name is a valid header value");
    web::resource(path)
        .app_data(RouteLabel(path))
        .route(route.method(method))
        .default_service(web::to(move |request: HttpRequest| {
            method_not_allowed(request, allow.clone())
        }))
        .wrap(from_fn(move |request, next: Next<BoxBody>| {
            gate(access, mode, traffic, request, next)
        }))
}

/// Every request of a resource passes here, in one middleware (each layer costs every request an
/// allocation and a call through a boxed future): the guard (who may), then the rate limit (how
/// often), then the handler, whose panics are answered 500; the quota's headers go on the
/// answer.
async fn gate(
    access: Access,
    mode: Mode,
    traffic: Traffic,
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse, Error> {
    let request = match admit(access, mode, request).await? {
        Admission::Admitted(request) => request,
        Admission::Refused(response) => return Ok(response),
    };
    let (request, counted) = match charge_request(traffic, request).await {
        Charge::Admitted(request, counted) => (request, counted),
        Charge::Refused(response) => return Ok(response),
    };
    let mut response = catch_panics(request, next).await?;
    if let Some(counted) = counted {
        counted.mark(&mut response);
    }
    Ok(response)
}

/// 405 for a known path asked with a method it does not serve; `Allow` names the one it does.
async fn method_not_allowed(request: HttpRequest, allow: HeaderValue) -> HttpResponse {
    let mut response = ErrorBody::response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", request.method(), request.path()),
    );
    response.headers_mut().insert(header::ALLOW, allow);
    response
}
