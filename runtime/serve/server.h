// A small local HTTP server for `cairun serve` (Debian's cpp-httplib).
//
// The page's static files (index.html, app.js, style.css, compiled in from
// runtime/serve/web/) are answered by the server's own threads; every
// request under /api/ is handed to one handler that runs on the thread that
// called serve_forever, one request at a time (the handler is Lua, and a Lua
// state belongs to one thread). The server stops on SIGINT or SIGTERM.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace cai::serve {

struct request {
    std::string method;  // "GET", "POST"
    std::string path;    // "/api/items"
    std::vector<std::pair<std::string, std::string>> params;  // query string, decoded, in order
    std::string body;
};

struct response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
};

struct options {
    std::string host = "127.0.0.1";  // loopback unless the user asks otherwise
    int port = 8800;                 // 0: any free port
    size_t max_body = 1 << 20;       // larger request bodies get 413
};

using handler = std::function<response(const request&)>;

// Binds (throws cai::error naming host:port when it cannot), calls
// on_listening(port) once, then serves until SIGINT/SIGTERM or stop().
// `handle` and `on_listening` run on the calling thread; an exception from
// `handle` becomes a 500 with its message.
void serve_forever(const options& opts, const std::function<void(int port)>& on_listening, const handler& handle);

// Asks a running serve_forever to return (async-signal-safe).
void stop();

// A static file of the page by its name ("index.html"), or nullptr.
struct web_file {
    const char* name;
    const char* content_type;
    const char* data;
    size_t size;
};
const web_file* find_web_file(const std::string& name);

}  // namespace cai::serve
