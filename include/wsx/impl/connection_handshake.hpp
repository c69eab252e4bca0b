// wsx/impl/connection_handshake.hpp - the opening handshake, client and server.
// Part of wsx::connection's implementation; <wsx/connection.hpp> includes it.
#pragma once

#include <wsx/connection.hpp>

namespace wsx {

// ---- the opening handshake ------------------------------------------------------

inline void connection::set_open(std::optional<deflate_params> deflate) {
    state_ = state::open;
    open_deadline_.reset();
    if (now_) last_activity_ = *now_;
    deflate_ = std::move(deflate);
    if (deflate_) {
        zlib_ = std::make_unique<compression>(
            compression{deflater(*deflate_, deflate_settings()), inflater(*deflate_, deflate_settings())});
    }
}

// Makes room for n more bytes of output; returns where they go.
inline std::uint8_t* connection::append_output(std::size_t n) {
    borrow_buffers();
    return out_.append(n);
}

inline void connection::queue_bytes(std::string_view bytes) {
    if (!bytes.empty()) std::memcpy(append_output(bytes.size()), bytes.data(), bytes.size());
}

inline std::error_code connection::start_handshake(client_request_options request) {
    if (role_ != role::client || state_ != state::connecting || hs_) return error::connection_closed;
    hs_ = std::make_unique<handshake_state>(options_->http);
    if (options_->deflate && request.extensions.empty()) request.extensions = make_deflate_offer(*options_->deflate);
    hs_->key = make_sec_key(options_->random);
    std::string head;
    try {
        append_client_request(head, request, hs_->key);
    } catch (const std::invalid_argument&) {
        // Options that cannot be put in a request (a host with a space, a
        // header wsx writes itself): the caller's mistake; nothing started.
        hs_.reset();
        return std::make_error_code(std::errc::invalid_argument);
    }
    hs_->client_request = std::move(request);
    queue_bytes(head);
    return {};
}

// Parses the handshake head at the front of the input; on success its bytes
// are copied out (so the views in request()/response() outlive the input
// buffer) and consumed.
template <class Parser, class Head>
inline http_parse_result connection::parse_head(Parser& parser, Head& head) {
    const const_bytes unread(in_.data() + in_read_, in_end_ - in_read_);
    http_parse_result r = parser.parse(unread, head);
    if (r.status != parse_status::complete) return r;
    hs_->head.assign(reinterpret_cast<const char*>(unread.data()), r.consumed);
    in_read_ += r.consumed;
    parser.reset();
    return parser.parse(const_bytes(reinterpret_cast<const std::uint8_t*>(hs_->head.data()), hs_->head.size()), head);
}

inline event connection::handshake_event() {
    if (!hs_) {
        if (role_ == role::client) return {}; // start_handshake() not called yet
        hs_ = std::make_unique<handshake_state>(options_->http);
    }
    if (awaiting_answer_) return {};
    const bool server = role_ == role::server;
    const http_parse_result r = server ? parse_head(hs_->request_parser, hs_->request.http)
                                       : parse_head(hs_->response_parser, hs_->response.http);
    if (r.status == parse_status::need_more) {
        if (!eof_) return {};
        abandon(error::unexpected_eof);
        return next_event();
    }
    if (r.status == parse_status::error) {
        // A malformed head: the server answers 400 (431 when too large).
        if (server) append_error_response_to_output(r.ec);
        abandon(r.ec);
        return next_event();
    }
    event ev;
    if (server) {
        // RFC 6455 §4.2.1: the server's checks; a failure is answered with the
        // HTTP status that names it (400, 403, 426...).
        if (auto ec = validate_request(hs_->request, options_->origins)) {
            if (is_plain_http(ec)) {
                // Not an upgrade at all: the application answers it.
                hs_->plain_http = ec;
                awaiting_answer_ = true;
                ev.type = event_type::http_request;
                ev.ec = ec;
                return ev;
            }
            append_error_response_to_output(ec);
            abandon(ec);
            return next_event();
        }
        awaiting_answer_ = true;
        ev.type = event_type::request;
        return ev;
    }

    ev.type = event_type::response;
    std::error_code ec = validate_response(hs_->response, hs_->client_request, hs_->key);
    std::optional<deflate_params> agreed;
    if (!ec && options_->deflate) {
        // RFC 7692 §7.1: the client checks the server's answer to its offer.
        std::vector<extension> answered;
        ec = parse_extensions(hs_->response.extensions(), answered);
        if (ec) ec = error::bad_extension_response;
        if (!ec) ec = check_deflate_response(answered, *options_->deflate, agreed);
    }
    if (ec) {
        abandon(ec); // the close event follows this response event
        return ev;
    }
    subprotocol_ = std::string(hs_->response.subprotocol);
    set_open(agreed);
    return ev;
}

inline void connection::append_error_response_to_output(std::error_code ec) {
    std::string response;
    append_error_response(response, ec);
    queue_bytes(response);
}

// A request that does not ask for a WebSocket at all: one the checks refuse
// before they look at Upgrade, or for its absence, without "Upgrade:
// websocket" among its fields.
inline bool connection::is_plain_http(std::error_code ec) const noexcept {
    const bool early = ec == error::bad_method || ec == error::bad_http_version || ec == error::missing_host ||
                       ec == error::missing_upgrade;
    return early && !hs_->request.http.headers.has_token("Upgrade", "websocket");
}

// Queues the final answer to the request (not 101) and ends with `ec`.
inline void connection::end_handshake(std::string_view response, std::error_code ec) {
    queue_bytes(response);
    awaiting_answer_ = false;
    abandon(ec);
}

inline std::error_code connection::accept(accept_options answer) {
    if (role_ != role::server || !awaiting_answer_) return error::connection_closed;
    if (hs_->plain_http) return hs_->plain_http; // reject() or refuse() it
    std::optional<deflate_agreement> agreement;
    if (options_->deflate) {
        // RFC 7692 §5.1: the server accepts at most one offer. A header it
        // cannot parse offers nothing it could accept.
        std::vector<extension> offers;
        if (!parse_extensions(hs_->request.extensions(), offers))
            agreement = negotiate_deflate_server(offers, *options_->deflate);
    }
    std::string response;
    try {
        append_accept_response(response, hs_->request, answer.subprotocol,
                               agreement ? std::string_view(agreement->response) : std::string_view(),
                               answer.headers);
    } catch (const std::invalid_argument&) {
        response.clear();
        append_http_response(response, 500);
        end_handshake(response, std::make_error_code(std::errc::invalid_argument));
        return std::make_error_code(std::errc::invalid_argument);
    }
    queue_bytes(response);
    awaiting_answer_ = false;
    subprotocol_ = std::move(answer.subprotocol);
    set_open(agreement ? std::optional<deflate_params>(agreement->params) : std::nullopt);
    return {};
}

inline std::error_code connection::reject(int status, std::string_view body, const http_fields& headers) {
    if (role_ != role::server || !awaiting_answer_) return error::connection_closed;
    std::string response;
    std::error_code result;
    try {
        append_http_response(response, status, body, headers);
    } catch (const std::invalid_argument&) {
        response.clear();
        append_http_response(response, 500);
        result = std::make_error_code(std::errc::invalid_argument);
    }
    end_handshake(response, result ? result : make_error_code(error::handshake_rejected));
    return result;
}

inline std::error_code connection::refuse() {
    if (role_ != role::server || !awaiting_answer_) return error::connection_closed;
    const std::error_code why = hs_->plain_http ? hs_->plain_http : make_error_code(error::handshake_rejected);
    std::string response;
    append_error_response(response, why);
    end_handshake(response, why);
    return {};
}

} // namespace wsx
