// Bindings of the attention family: fused scaled-dot-product attention forward and backward.
// q/k/v/mask arrive as views of any strides; Python passes one int64 element offset per
// (batch, head) matrix (python/fastlayers/functional/_attention.py), so broadcast masks and
// non-contiguous heads cross without a copy. The last two dimensions give rows and columns.
#include <pybind11/numpy.h>

#include "attention/attention.h"
#include "bindings/bind_common.h"

namespace fl {
namespace bind {
namespace {

using OffArray = py::array_t<index_t, py::array::c_style>;

template <class T>
StridedMats<T> mats(const py::array& a, const OffArray& off, index_t count, const char* name) {
  FL_CHECK(a.ndim() >= 2, name, ": internal error, expected at least 2-D");
  FL_CHECK(off.size() == count, name, ": internal error, ", off.size(), " offsets for ", count, " matrices");
  StridedMats<T> m;
  m.ptr = static_cast<const T*>(a.data());
  m.off = off.data();
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  const auto rs = a.strides(a.ndim() - 2), cs = a.strides(a.ndim() - 1);
  FL_CHECK(rs % item == 0 && cs % item == 0, name, ": strides are not multiples of the item size");
  m.rs = static_cast<index_t>(rs / item);
  m.cs = static_cast<index_t>(cs / item);
  return m;
}

index_t dim(const py::array& a, int from_end) { return static_cast<index_t>(a.shape(a.ndim() - from_end)); }

// Shared by forward and backward: sizes, q/k/v views, mask, flags.
AttentionParams common(const py::array& q, const OffArray& q_off, const py::array& k, const OffArray& k_off,
                       const py::array& v, const OffArray& v_off, const py::object& mask, const py::object& mask_off,
                       index_t group, bool causal, float scale) {
  require_f32(q, "q");
  require_f32(k, "k");
  require_f32(v, "v");
  AttentionParams p;
  p.nbh = q_off.size();
  FL_CHECK(group >= 1 && p.nbh % group == 0, "attention: internal error, bad group ", group);
  p.group = group;
  p.L = dim(q, 2);
  p.E = dim(q, 1);
  p.S = dim(k, 2);
  p.Ev = dim(v, 1);
  FL_CHECK(dim(k, 1) == p.E && dim(v, 2) == p.S, "attention: internal error, k/v shapes");
  p.q = mats<float>(q, q_off, p.nbh, "q");
  p.k = mats<float>(k, k_off, p.nbh / group, "k");
  p.v = mats<float>(v, v_off, p.nbh / group, "v");
  if (!mask.is_none()) {
    const auto m = py::cast<py::array>(mask);
    const auto moff = py::cast<OffArray>(mask_off);
    FL_CHECK(dim(m, 2) == p.L && dim(m, 1) == p.S, "attn_mask: internal error, mask view is not (.., L, S)");
    if (py::dtype::of<bool>().is(m.dtype())) {
      p.mask_kind = MaskKind::boolean;
      p.mask_b = mats<std::uint8_t>(m, moff, p.nbh, "attn_mask");
    } else {
      require_f32(m, "attn_mask");
      p.mask_kind = MaskKind::additive;
      p.mask_f = mats<float>(m, moff, p.nbh, "attn_mask");
    }
  }
  p.causal = causal;
  p.scale = scale;
  return p;
}

void require_size(const py::array& a, index_t n, const char* name) {
  FL_CHECK(static_cast<index_t>(a.size()) == n, name, ": internal error, size ", a.size(), ", expected ", n);
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](const py::array& q, const OffArray& q_off, const py::array& k, const OffArray& k_off, const py::array& v,
         const OffArray& v_off, const py::object& mask, const py::object& mask_off, index_t group, bool causal,
         float scale, py::array& out, const py::object& lse) {
        AttentionParams p = common(q, q_off, k, k_off, v, v_off, mask, mask_off, group, causal, scale);
        p.out = out_ptr(out, "out");
        require_size(out, p.nbh * p.L * p.Ev, "out");
        if (!lse.is_none()) {
          auto l = py::cast<py::array>(lse);
          p.lse = out_ptr(l, "lse");
          require_size(l, p.nbh * p.L, "lse");
        }
        py::gil_scoped_release nogil;
        run_attention_forward(p);
      },
      py::arg("q"), py::arg("q_off"), py::arg("k"), py::arg("k_off"), py::arg("v"), py::arg("v_off"),
      py::arg("mask"), py::arg("mask_off"), py::arg("group"), py::arg("causal"), py::arg("scale"), py::arg("out"),
      py::arg("lse"), "fused attention forward: out (nbh, L, Ev) and optionally lse (nbh, L)");
  m.def(
      "attention_backward",
      [](const py::array& grad_out, const py::array& q, const OffArray& q_off, const py::array& k,
         const OffArray& k_off, const py::array& v, const OffArray& v_off, const py::array& out,
         const py::array& lse, const py::object& mask, const py::object& mask_off, index_t group, bool causal,
         float scale, py::array& dq, py::array& dk, py::array& dv) {
        AttentionParams p = common(q, q_off, k, k_off, v, v_off, mask, mask_off, group, causal, scale);
        const index_t nkv = p.nbh / group;
        p.dout = in_contig(grad_out, "grad_out");
        p.o = in_contig(out, "out");
        p.lse_in = in_contig(lse, "lse");
        require_size(grad_out, p.nbh * p.L * p.Ev, "grad_out");
        require_size(out, p.nbh * p.L * p.Ev, "out");
        require_size(lse, p.nbh * p.L, "lse");
        p.dq = out_ptr(dq, "grad_q");
        p.dk = out_ptr(dk, "grad_k");
        p.dv = out_ptr(dv, "grad_v");
        require_size(dq, p.nbh * p.L * p.E, "grad_q");
        require_size(dk, nkv * p.S * p.E, "grad_k");
        require_size(dv, nkv * p.S * p.Ev, "grad_v");
        py::gil_scoped_release nogil;
        run_attention_backward(p);
      },
      py::arg("grad_out"), py::arg("q"), py::arg("q_off"), py::arg("k"), py::arg("k_off"), py::arg("v"),
      py::arg("v_off"), py::arg("out"), py::arg("lse"), py::arg("mask"), py::arg("mask_off"), py::arg("group"),
      py::arg("causal"), py::arg("scale"), py::arg("dq"), py::arg("dk"), py::arg("dv"),
      "fused attention backward (FlashAttention-2 recompute from lse): dq, dk, dv");
}

}  // namespace bind
}  // namespace fl
