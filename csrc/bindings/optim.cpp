// Bindings of the fused optimizer updates (python/fastlayers/optim.py). Every array must
// hold exactly as many float32 values as the parameter: checked here, never assumed.
#include "bindings/bind_common.h"
#include "optim/optim.h"

namespace fl {
namespace bind {

namespace {

float* state_ptr(const py::object& o, const char* name, index_t n) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  FL_CHECK(static_cast<index_t>(a.size()) == n, name, ": holds ", a.size(), " values, the parameter ", n);
  return out_ptr(a, name);
}

const float* grad_ptr(const py::array& g, index_t n) {
  FL_CHECK(static_cast<index_t>(g.size()) == n, "grad: holds ", g.size(), " values, the parameter ", n);
  return in_contig(g, "grad");
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("sgd_step", [](py::array& p, const py::array& g, const py::object& buf, float lr, float momentum,
                       float dampening, float weight_decay, bool nesterov, bool first) {
    const index_t n = p.size();
    float* pp = out_ptr(p, "param");
    const float* gp = grad_ptr(g, n);
    float* bp = state_ptr(buf, "momentum_buffer", n);
    SgdParams a;
    a.lr = lr;
    a.momentum = momentum;
    a.dampening = dampening;
    a.weight_decay = weight_decay;
    a.nesterov = nesterov;
    a.first = first;
    py::gil_scoped_release nogil;
    sgd_step(pp, gp, bp, n, a);
  });
  m.def("adam_step", [](py::array& p, const py::array& g, py::array& m1, py::array& v, const py::object& vmax,
                        float lr, float beta1, float beta2, float eps, float weight_decay, float step_size,
                        float bc2_sqrt, bool decoupled) {
    const index_t n = p.size();
    float* pp = out_ptr(p, "param");
    const float* gp = grad_ptr(g, n);
    float* mp = state_ptr(m1, "exp_avg", n);
    float* vp = state_ptr(v, "exp_avg_sq", n);
    float* vmp = state_ptr(vmax, "max_exp_avg_sq", n);
    AdamParams a;
    a.lr = lr;
    a.beta1 = beta1;
    a.beta2 = beta2;
    a.eps = eps;
    a.weight_decay = weight_decay;
    a.step_size = step_size;
    a.bc2_sqrt = bc2_sqrt;
    a.decoupled = decoupled;
    py::gil_scoped_release nogil;
    adam_step(pp, gp, mp, vp, vmp, n, a);
  });
  m.def("rmsprop_step", [](py::array& p, const py::array& g, py::array& sq, const py::object& ga,
                           const py::object& buf, float lr, float alpha, float eps, float weight_decay,
                           float momentum) {
    const index_t n = p.size();
    float* pp = out_ptr(p, "param");
    const float* gp = grad_ptr(g, n);
    float* sp = state_ptr(sq, "square_avg", n);
    float* gap = state_ptr(ga, "grad_avg", n);
    float* bp = state_ptr(buf, "momentum_buffer", n);
    RmspropParams a;
    a.lr = lr;
    a.alpha = alpha;
    a.eps = eps;
    a.weight_decay = weight_decay;
    a.momentum = momentum;
    py::gil_scoped_release nogil;
    rmsprop_step(pp, gp, sp, gap, bp, n, a);
  });
}

}  // namespace bind
}  // namespace fl
