"""numba kernel of the transfer-matrix transmission (twin: ``landauer.transmission_np``)."""

import cmath
import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def transmission_nb(e, h, values, mass, v_left, v_right, t_out, r_out):  # pragma: no cover - compiled
    """T and R of each energy e[i] for cells of widths h and potentials values (module Notes of
    ``bohmpower.devices.landauer``); t_out, r_out are filled in place (0 where a lead is closed)."""
    n_c = values.shape[0]
    for i in range(e.shape[0]):
        ei = e[i]
        if not (ei > v_left and ei > v_right):
            t_out[i] = 0.0
            r_out[i] = 0.0
            continue
        k_l = math.sqrt(2.0 * mass * (ei - v_left))
        k_r = math.sqrt(2.0 * mass * (ei - v_right))
        k_unit = max(k_l, k_r)
        psi = 1.0 + 0.0j
        dpsi = 1j * k_r
        log_scale = 0.0
        for c in range(n_c - 1, -1, -1):
            k = cmath.sqrt(complex(2.0 * mass * (ei - values[c]), 0.0))
            n_sub = max(1, math.ceil(abs(k.imag) * h[c] / 30.0))
            hs = h[c] / n_sub
            kh = k * hs
            co = cmath.cos(kh)
            if abs(kh) < 1e-8:
                s_over_k = complex(hs, 0.0)
                k_s = k * kh
            else:
                sn = cmath.sin(kh)
                s_over_k = sn / k
                k_s = k * sn
            for _ in range(n_sub):
                psi, dpsi = co * psi - s_over_k * dpsi, k_s * psi + co * dpsi
                scale = max(abs(psi), abs(dpsi) / k_unit)
                psi /= scale
                dpsi /= scale
                log_scale += math.log(scale)
        a = 0.5 * (psi + dpsi / (1j * k_l))
        b = 0.5 * (psi - dpsi / (1j * k_l))
        abs_a2 = a.real * a.real + a.imag * a.imag
        t_out[i] = (k_r / k_l) / abs_a2 * math.exp(-2.0 * log_scale)
        r_out[i] = (b.real * b.real + b.imag * b.imag) / abs_a2


def _warm() -> None:
    """Compile once with representative types (cached on disk)."""
    transmission_nb(np.zeros(1), np.ones(1), np.zeros(1), 1.0, -1.0, -1.0, np.zeros(1),
                    np.zeros(1))
