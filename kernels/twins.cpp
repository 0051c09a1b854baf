// The CPU twins of kernels/twins.py in C++, for the trainer's trusted iterations (kernels.native).
//
// Each function is its Python twin's trusted path (kernels.twins.trusted(): no argument checks,
// every tensor already has its run axis) with the same ATen operations on the same buffers, so its
// numbers are bitwise the Python twin's: only the Python between the operations is gone (about 60
// torch calls per iteration, each 2-5 µs of argument parsing and dispatch from Python, against
// well under 1 µs from C++). One difference in how, not what: on two threads, where a launch has
// two independent products they run side by side, one thread each (side_by_side), the same bits
// under MKL's strict mode (set by fastgan train and the tests). Read kernels/twins.py for what
// each launch computes and why; this file follows it line by line.
//
// Scratch buffers are this file's own (allocated on first use, cached by name and shape, as the
// Python twins' _scratch), and so is the cache of gathered real rows (forget_gathered clears it).
// A Plan records calls of these launches and replays them from C++ (kernels.twins.replay).

#include <torch/extension.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

using at::Tensor;
using Opt = std::optional<Tensor>;
using Pair = std::optional<std::tuple<Tensor, Tensor>>;

namespace {

constexpr int64_t ACT_NONE = 0, ACT_RELU = 1, ACT_SIGMOID = 2;  // as kernels.linear_act

std::map<std::pair<std::string, std::vector<int64_t>>, Tensor> scratch_map;
std::map<void*, std::vector<int64_t>> gathered;  // the gathered rows' buffer -> (images, idx, versions) it holds

Tensor scratch(const std::string& name, at::IntArrayRef shape) {
  auto key = std::make_pair(name, shape.vec());
  auto it = scratch_map.find(key);
  if (it == scratch_map.end()) it = scratch_map.emplace(key, at::empty(shape, at::kFloat)).first;
  return it->second;
}

Tensor slot_sum(const std::string& name, const Tensor& t) {
  if (t.size(0) == 1) return t[0];
  Tensor total = scratch(name, t.sizes().slice(1));
  at::add_out(total, t[0], t[1]);
  for (int64_t s = 2; s < t.size(0); ++s) total.add_(t[s]);
  return total;
}

Tensor gather(const std::tuple<Tensor, Tensor>& rows, int64_t R, int64_t K) {
  const Tensor& images = std::get<0>(rows);
  Tensor idx = std::get<1>(rows);
  if (idx.dim() == 1) idx = idx.unsqueeze(0);
  int64_t G = idx.size(1);
  Tensor out = scratch("gathered", {R, G, K});
  std::vector<int64_t> key = {reinterpret_cast<int64_t>(images.data_ptr()), static_cast<int64_t>(images._version()),
                              reinterpret_cast<int64_t>(idx.data_ptr()), static_cast<int64_t>(idx._version())};
  auto it = gathered.find(out.data_ptr());
  if (it == gathered.end() || it->second != key) {
    Tensor flat = out.view({R * G, K});
    at::index_select_out(flat, images, 0, idx.view(-1));
    gathered[out.data_ptr()] = key;
  }
  return out;
}

// Two independent jobs (each a product) side by side, one per thread, where torch has two threads:
// inside the parallel region each product runs on one thread (MKL takes one there), and the pair
// takes 0.85-0.95x the time of the two one after another on MKL's two threads (G2's dx and dW,
// D1's forward on the real and the fake rows; benchmarks/NOTES.md, v4.15). Elsewhere one after the
// other: on more threads MKL's own on each product were not measured against it. The numbers are
// the same either way under MKL's strict mode (MKL_CBWR=AUTO,STRICT, as fastgan train and the tests
// set it), where a product's bits do not depend on its threads. (Needs the build's -fopenmp: without
// it at::parallel_for runs the two here one after the other.)
constexpr int SIDE_BY_SIDE_THREADS = 2;

template <class A, class B>
void side_by_side(const A& a, const B& b) {
  if (at::get_num_threads() != SIDE_BY_SIDE_THREADS || at::in_parallel_region()) {
    a();
    b();
    return;
  }
  at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) job == 0 ? a() : b();
  });
}

void activate(Tensor& y, int64_t act) {
  if (act == ACT_RELU) y.relu_();
  else if (act == ACT_SIGMOID) y.sigmoid_();
  else TORCH_CHECK(act == ACT_NONE, "linear_act_forward (C++): act must be ACT_NONE, ACT_RELU or ACT_SIGMOID");
}

Tensor d1_output(const std::string& op, const Opt& h, const Pair& pre, int64_t R, int64_t M, int64_t H) {
  if (!pre) return *h;
  Tensor total = slot_sum(op + "pre", std::get<0>(*pre));
  Tensor out = scratch(op + "h", {R, M, H});
  at::add_out(out, total, std::get<1>(*pre).unsqueeze(1));
  return out.relu_();
}

std::pair<Tensor, Tensor> row_terms(int64_t M, int64_t split, double t0, double t1) {
  static std::map<std::tuple<int64_t, int64_t, double, double>, std::pair<Tensor, Tensor>> terms;
  auto key = std::make_tuple(M, split, t0, t1);
  auto it = terms.find(key);
  if (it == terms.end()) {
    Tensor target = at::full({M, 1}, t1, at::kFloat), scale = at::full({M, 1}, 1.0 / std::max<int64_t>(M - split, 1), at::kFloat);
    target.slice(0, 0, split).fill_(t0);
    scale.slice(0, 0, split).fill_(1.0 / split);
    it = terms.emplace(key, std::make_pair(target, scale)).first;
  }
  return it->second;
}

// D's head on h (R, M, H): (each row's share of its part's mean BCE or undefined, dl, g), as _head.
std::tuple<Tensor, Tensor, Tensor> head(const std::string& op, const Tensor& h, const Tensor& w2, const Tensor& b2,
                                        int64_t split, double t0, double t1, bool losses) {
  int64_t R = h.size(0), M = h.size(1), H = h.size(2);
  auto [target, scale] = row_terms(M, split, t0, t1);
  Tensor logit = scratch(op + "logit", {R, M, 1}), dl = scratch(op + "dl", {R, M, 1}), bce;
  at::baddbmm_out(logit, b2.unsqueeze(1), h, w2);
  at::sigmoid_out(dl, logit);
  dl.sub_(target).mul_(scale);
  if (losses) {
    bce = scratch(op + "bce", {R, M, 1});
    at::softplus_out(bce, logit, 1, 20);
    bce.addcmul_(logit, target, -1.0).mul_(scale);
  }
  Tensor g = scratch(op + "g", {R, M, H});
  at::bmm_out(g, dl, w2.transpose(1, 2));
  at::threshold_backward_out(g, g, h, 0);
  return {bce, dl, g};
}

void r1_grads(const std::string& op, const Tensor& h, const Tensor& w1, const Tensor& w2, const Tensor& gamma, int64_t n,
              Tensor dw1, const Tensor& dw2) {
  int64_t R = h.size(0), H = h.size(2);
  Tensor scale = scratch(op + "r1scale", {R, 1, 1});
  Tensor count = at::scalar_tensor(n, at::kLong);  // as Python's int: a wrapped number, no type promotion
  count.unsafeGetTensorImpl()->set_wrapped_number(true);
  at::div_out(scale, gamma.view({R, 1, 1}), count);
  Tensor u = scratch(op + "r1u", h.sizes());
  at::threshold_backward_out(u, w2.transpose(1, 2).expand(h.sizes()), h, 0);
  Tensor gram = scratch(op + "r1w", {R, H, H});
  at::bmm_out(gram, w1.transpose(1, 2), w1);
  Tensor uw = scratch(op + "r1uw", h.sizes());
  at::bmm_out(uw, u, gram);
  at::threshold_backward_out(uw, uw, h, 0);
  dw2.addcmul_(uw.sum(1).unsqueeze(2), scale);
  at::bmm_out(gram, u.transpose(1, 2), u);
  dw1.baddbmm_(w1, gram.mul_(scale));
}

}  // namespace

void linear_act_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor y, int64_t act, const std::string&,
                        const Pair& rows, bool partials) {
  if (partials) y = y[0];
  int64_t R = w.size(0), K = x.size(-1);
  int64_t G = rows ? std::get<1>(*rows).size(-1) : 0;
  auto product = [&](Tensor out, const Tensor& in) {
    if (partials) at::bmm_out(out, in, w);
    else at::baddbmm_out(out, b.unsqueeze(1), in, w);
  };
  if (rows) {
    Tensor real = gather(*rows, R, K);
    side_by_side([&] { product(y.slice(1, 0, G), real); }, [&] { product(y.slice(1, G), x); });
  } else {
    product(y, x);
  }
  if (!partials) activate(y, act);
}

void linear_act_backward(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& dy_in, Opt dx, Opt dw, Opt db,
                         int64_t act, const std::string&, bool partials, bool dy_partials) {
  const std::string op = "linear_act_backward";
  int64_t R = w.size(0), N = w.size(2), M = x.size(-2);
  Tensor dy = dy_partials ? slot_sum(op + "dy", dy_in) : dy_in, g;
  if (act == ACT_NONE) g = dy;
  else if (act == ACT_RELU || act == ACT_SIGMOID) {
    g = scratch(op, {R, M, N});
    if (act == ACT_RELU) at::threshold_backward_out(g, dy, y, 0);
    else at::sigmoid_backward_out(g, dy, y);
  } else {
    TORCH_CHECK(false, "linear_act_backward (C++): act must be ACT_NONE, ACT_RELU or ACT_SIGMOID");
  }
  Tensor out_x = dx ? (partials ? (*dx)[0] : *dx) : Tensor(), out_w = dw ? (partials ? (*dw)[0] : *dw) : Tensor();
  auto input_grad = [&] { at::bmm_out(out_x, g, w.transpose(1, 2)); };
  auto weight_grad = [&] { at::bmm_out(out_w, x.transpose(1, 2), g); };
  if (dx && dw) side_by_side(input_grad, weight_grad);
  else if (dx) input_grad();
  else if (dw) weight_grad();
  if (dw) {
    Tensor out_b = partials ? (*db)[0] : *db;
    at::sum_out(out_b, g, 1);
  }
}

void d_grad(const Tensor& x, const Tensor& w2, const Tensor& b2, Opt losses, Tensor dw1, Tensor db1, Tensor dw2, Tensor db2,
            int64_t split, double t0, double t1, const Opt& h_in, const Pair& pre, const Pair& rows, const std::string&,
            const Opt& r1, const Opt& w1) {
  const std::string op = "d_grad";
  int64_t R = w2.size(0), H = w2.size(1), K = x.size(-1);
  Tensor real;
  if (rows) real = gather(*rows, R, K);
  int64_t G = rows ? real.size(1) : 0, M = G + x.size(1);
  if (losses) losses = (*losses)[0];
  dw1 = dw1[0];
  db1 = db1[0];
  dw2 = dw2[0];
  db2 = db2[0];
  Tensor h = d1_output(op, h_in, pre, R, M, H);
  auto [bce, dl, g] = head(op, h, w2, b2, split, t0, t1, losses.has_value());
  if (losses) {
    Tensor real_part = losses->select(1, 1), fake_part = losses->select(1, 2), total = losses->select(1, 0);
    at::sum_out(real_part, bce.slice(1, 0, split).select(2, 0), 1);
    at::sum_out(fake_part, bce.slice(1, split).select(2, 0), 1);
    at::add_out(total, real_part, fake_part);
  }
  at::bmm_out(dw2, h.transpose(1, 2), dl);
  at::sum_out(db2, dl, 1);
  at::sum_out(db1, g, 1);
  if (!rows) {
    at::bmm_out(dw1, x.transpose(1, 2), g);
  } else {
    at::bmm_out(dw1, real.transpose(1, 2), g.slice(1, 0, G));
    dw1.baddbmm_(x.transpose(1, 2), g.slice(1, G));
  }
  if (r1 && r1->any().item<bool>()) {  // all zero (lazy R1's other steps): nothing to add
    int64_t k_r1 = w1->size(-2);
    r1_grads(op, h.slice(1, 0, split), *w1, w2, *r1, split, dw1.slice(1, 0, k_r1), dw2);
  }
}

void d_input_grad(const Opt& h_in, const Tensor& w1, const Tensor& w2, const Tensor& b2, Opt losses, Tensor dx, double t,
                  const Pair& pre, const std::string&) {
  const std::string op = "d_input_grad";
  int64_t R = w2.size(0), H = w2.size(1), M = dx.size(-2);
  if (losses) losses = (*losses)[0];
  Tensor h = d1_output(op, h_in, pre, R, M, H);
  auto [bce, dl, g] = head(op, h, w2, b2, M, t, t, losses.has_value());
  if (losses) at::sum_out(*losses, bce, 1);
  auto rows = [&](int64_t lo, int64_t n) {
    Tensor out = dx.narrow(1, lo, n);
    at::bmm_out(out, g.narrow(1, lo, n), w1.transpose(1, 2));
  };
  side_by_side([&] { rows(0, M / 2); }, [&] { rows(M / 2, M - M / 2); });  // dx's halves: independent
}

void adam_update(const Tensor& p, const Tensor& g_in, const Tensor& m, const Tensor& v, Tensor hyper, double beta2, double eps,
                 const Opt& ema) {
  Tensor g = g_in.dim() == p.dim() + 1 ? slot_sum("adam_update g", g_in) : g_in;
  if (hyper.dim() == 1) hyper = hyper.unsqueeze(0);
  Tensor step = scratch("adam step", {});
  // The rows as Python's floats (tolist): float32 ones read in place (exact in double), others converted.
  bool f32 = hyper.scalar_type() == at::kFloat;
  Tensor rows = f32 ? hyper : hyper.to(at::kDouble);
  auto value = [&](int64_t r, int64_t c) -> double {
    return f32 ? rows.accessor<float, 2>()[r][c] : rows.accessor<double, 2>()[r][c];
  };
  for (int64_t r = 0; r < hyper.size(0); ++r) {
    double step_size = value(r, 0), bc2_sqrt = value(r, 1), beta1 = 1.0 - value(r, 2);
    double s = bc2_sqrt < 1.0 ? std::min(std::log1p(-bc2_sqrt * bc2_sqrt) / std::log(beta2), 1e9) : 1e9;
    step.fill_(s);
    at::_fused_adam_({p[r]}, {g[r]}, {m[r]}, {v[r]}, {}, {step}, step_size * (1.0 - std::pow(beta1, s)), beta1, beta2, 0.0,
                     eps, false, false);
    if (ema && value(r, 3) != 0.0) (*ema)[r].lerp_(p[r], value(r, 3));
  }
}

void forget_gathered() { gathered.clear(); }

void uniform_(Tensor out, double from, double to, const at::Generator& gen);  // kernels/uniform.cpp

// A recorded sequence of these launches, each with its arguments (the same tensors and views,
// held here), run again and again without Python: the trainer records an advance's trusted
// iterations once per length (kernels.twins.replay) and replays them, as a CUDA graph replays
// captured kernels. What each launch computes is decided when it runs, from its tensors' contents
// at that time (the gathered rows' cache keys on the index buffer's version, as a direct call does).
struct Plan {
  std::vector<std::function<void()>> launches;
  void run() const {
    for (const auto& launch : launches) launch();
  }
};

namespace py = pybind11;

// f as the module's function `name`, and as Plan's method `name` that records a call of f.
template <typename... A, typename... Extra>
void launch(py::module_& m, py::class_<Plan>& plan, const char* name, void (*f)(A...), const Extra&... extra) {
  m.def(name, f, extra...);
  plan.def(name, [f](Plan& p, A... a) { p.launches.emplace_back([=] { f(a...); }); }, extra...);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  auto plan = py::class_<Plan>(m, "Plan")
                  .def(py::init<>())
                  .def("run", &Plan::run, py::call_guard<py::gil_scoped_release>())
                  .def("__len__", [](const Plan& p) { return p.launches.size(); });
  launch(m, plan, "linear_act_forward", &linear_act_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"),
         py::arg("act"), py::arg("precision") = "ieee", py::arg("rows") = py::none(), py::arg("partials") = false);
  launch(m, plan, "linear_act_backward", &linear_act_backward, py::arg("x"), py::arg("w"), py::arg("y"), py::arg("dy"),
         py::arg("dx"), py::arg("dw"), py::arg("db"), py::arg("act"), py::arg("precision") = "ieee",
         py::arg("partials") = false, py::arg("dy_partials") = false);
  launch(m, plan, "d_grad", &d_grad, py::arg("x"), py::arg("w2"), py::arg("b2"), py::arg("losses"), py::arg("dw1"),
         py::arg("db1"), py::arg("dw2"), py::arg("db2"), py::arg("split"), py::arg("t0") = 1.0, py::arg("t1") = 0.0,
         py::arg("h") = py::none(), py::arg("pre") = py::none(), py::arg("rows") = py::none(),
         py::arg("precision") = "ieee", py::arg("r1") = py::none(), py::arg("w1") = py::none());
  launch(m, plan, "d_input_grad", &d_input_grad, py::arg("h"), py::arg("w1"), py::arg("w2"), py::arg("b2"),
         py::arg("losses"), py::arg("dx"), py::arg("t") = 1.0, py::arg("pre") = py::none(), py::arg("precision") = "ieee");
  launch(m, plan, "adam_update", &adam_update, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("hyper"),
         py::arg("beta2"), py::arg("eps"), py::arg("ema") = py::none());
  m.def("forget_gathered", &forget_gathered);
  m.def("uniform_", &uniform_, py::arg("out"), py::arg("from"), py::arg("to"), py::arg("generator"));
}
