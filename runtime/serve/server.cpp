#include "serve/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/signals.h"
#include "serve/web_files.h"

namespace cai::serve {
namespace {

std::atomic<bool> stop_requested{false};

extern "C" void on_stop_signal(int) { stop_requested.store(true); }

// One /api/ request waiting for the serving thread.
struct job {
    request req;
    std::promise<response> done;
};

// Requests from the server's threads to the one thread that runs the handler.
class job_queue {
public:
    std::future<response> push(request req) {
        auto j = std::make_shared<job>();
        j->req = std::move(req);
        std::future<response> f = j->done.get_future();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (closed_) {
                j->done.set_value(response{503, "application/json", R"({"error":"the server is stopping"})"});
                return f;
            }
            jobs_.push_back(std::move(j));
        }
        ready_.notify_one();
        return f;
    }

    // The next job, or nullptr after `wait` without one.
    std::shared_ptr<job> pop(std::chrono::milliseconds wait) {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait_for(lock, wait, [&] { return !jobs_.empty(); });
        if (jobs_.empty()) return nullptr;
        auto j = std::move(jobs_.front());
        jobs_.pop_front();
        return j;
    }

    // Answers what is still queued with 503 and refuses new jobs.
    void close() {
        std::lock_guard<std::mutex> lock(mutex_);
        closed_ = true;
        for (auto& j : jobs_) j->done.set_value(response{503, "application/json", R"({"error":"the server is stopping"})"});
        jobs_.clear();
    }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::shared_ptr<job>> jobs_;
    bool closed_ = false;
};

// Installs SIGINT/SIGTERM handlers for the server's lifetime, restoring the old ones after.
class signal_scope {
public:
    signal_scope() {
        install_signal_handler(SIGINT, on_stop_signal, &old_int_);
        try {
            install_signal_handler(SIGTERM, on_stop_signal, &old_term_);
        } catch (...) {
            sigaction(SIGINT, &old_int_, nullptr);  // the destructor does not run for a constructor that threw
            throw;
        }
    }
    ~signal_scope() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
    }

private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
};

std::string json_error(const std::string& message) {
    std::string out = "{\"error\":\"";
    for (char c : message) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"}";
}

// While developing the page, CAI_SERVE_WEB_PATH=runtime/serve/web serves it from disk.
bool serve_from_disk(const std::string& name, httplib::Response& res) {
    const char* dir = std::getenv("CAI_SERVE_WEB_PATH");
    if (!dir || !*dir) return false;
    const web_file* f = find_web_file(name);
    if (!f) return false;
    res.set_content(read_file(path_join(dir, name)), f->content_type);
    return true;
}

}  // namespace

const web_file* find_web_file(const std::string& name) {
    for (const web_file* f = web_files; f->name; ++f)
        if (name == f->name) return f;
    return nullptr;
}

void stop() { stop_requested.store(true); }

void serve_forever(const options& opts, const std::function<void(int port)>& on_listening, const handler& handle) {
    stop_requested.store(false);
    signal_scope signals;
    job_queue queue;
    httplib::Server server;
    server.set_payload_max_length(opts.max_body);
    // httplib's default sets SO_REUSEPORT, which lets a second server bind the
    // same port and share its requests; SO_REUSEADDR alone makes that an error
    // (and still allows a quick restart on the same port).
    server.set_socket_options([](int sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server.set_default_headers({
        {"Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; base-uri 'none'"},
        {"X-Content-Type-Options", "nosniff"},
        {"Cache-Control", "no-store"},
    });

    auto static_file = [](const httplib::Request& req, httplib::Response& res) {
        std::string name = req.path == "/" ? "index.html" : req.path.substr(1);
        try {
            if (serve_from_disk(name, res)) return;
        } catch (const std::exception& e) {
            res.status = 500;
            res.set_content(json_error(e.what()), "application/json");
            return;
        }
        if (const web_file* f = find_web_file(name)) {
            res.set_content(f->data, f->size, f->content_type);
            return;
        }
        res.status = 404;
        res.set_content(json_error("no page or file " + req.path + " (the page is /, the API under /api/)"),
                        "application/json");
    };
    auto api = [&queue](const httplib::Request& req, httplib::Response& res) {
        request r;
        r.method = req.method;
        r.path = req.path;
        for (const auto& p : req.params) r.params.emplace_back(p.first, p.second);
        r.body = req.body;
        response out = queue.push(std::move(r)).get();
        res.status = out.status;
        res.set_content(out.body, out.content_type);
    };
    // Two guards against other web sites a browser on this machine visits:
    // a loopback server answers only Host headers naming the loopback
    // (DNS rebinding), and a POST must be JSON, which a cross-site page can
    // only send after a CORS preflight that this server never grants.
    const bool loopback = opts.host == "127.0.0.1" || opts.host == "localhost" || opts.host == "::1";
    int bound_port = 0;
    server.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
        if (loopback) {
            std::string host = req.get_header_value("Host");
            std::string port = ":" + std::to_string(bound_port);
            bool ok = false;
            for (const char* name : {"127.0.0.1", "localhost", "[::1]"})
                if (host == name + port || (bound_port == 80 && host == name)) ok = true;
            if (!ok) {
                res.status = 403;
                res.set_content(json_error("unexpected Host header '" + host + "': this server answers only " +
                                           "http://127.0.0.1" + port + "/ and http://localhost" + port + "/"),
                                "application/json");
                return httplib::Server::HandlerResponse::Handled;
            }
        }
        if (req.method == "POST" && req.get_header_value("Content-Type").rfind("application/json", 0) != 0) {
            res.status = 415;
            res.set_content(json_error("a POST body must be JSON (Content-Type: application/json)"), "application/json");
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    server.Get("/api/.*", api);
    server.Post("/api/.*", api);
    server.Get("/.*", static_file);
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        std::string what = res.status == 413 ? "the request body is too large"
                           : res.status == 404 ? "no handler for " + req.method + " " + req.path
                                               : "bad request";
        res.set_content(json_error(what), "application/json");
    });

    int port = opts.port;
    if (port == 0) {
        port = server.bind_to_any_port(opts.host);
        if (port < 0) fail("cairun serve: cannot listen on ", opts.host, " (any port)");
    } else if (!server.bind_to_port(opts.host, port)) {
        fail("cairun serve: cannot listen on ", opts.host, ":", port,
             " (is the port in use? choose another with --port, or --port 0 for any free one)");
    }
    bound_port = port;
    // httplib's stop() does nothing until the listening thread has marked the
    // server running, so a stop that came first would leave that thread in
    // accept() for ever: announce the port only once the server runs, and stop
    // until the thread has left.
    std::atomic<bool> listener_done{false};
    std::thread listener([&server, &listener_done] {
        server.listen_after_bind();
        listener_done.store(true);
    });
    auto finish = [&] {
        queue.close();  // first: the listener waits for its handlers, which may wait on the queue
        while (!listener_done.load()) {
            server.stop();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        listener.join();
    };
    try {
        while (!server.is_running() && !listener_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (listener_done.load()) fail("cairun serve: the server on ", opts.host, ":", port, " stopped before it listened");
        on_listening(port);
        while (!stop_requested.load()) {
            std::shared_ptr<job> j = queue.pop(std::chrono::milliseconds(200));
            if (!j) continue;
            response out;
            try {
                out = handle(j->req);
            } catch (const std::exception& e) {
                out = response{500, "application/json", json_error(e.what())};
            }
            j->done.set_value(std::move(out));
        }
    } catch (...) {
        finish();
        throw;
    }
    finish();
}

}  // namespace cai::serve
