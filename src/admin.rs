//! sidekick's own paths. `GET /v1/health`: 200 while any site has a backend up.

use actix_web::HttpResponse;

use crate::pool::SharedView;

pub fn health(view: &SharedView) -> HttpResponse {
    if view.load().any_up() {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::BadGateway().finish()
    }
}
