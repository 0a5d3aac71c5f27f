/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The public header first and alone: it must bring everything it uses. */
#include <vircgroup_v2_devices.h>

int main(void)
{
    vircgroup_v2_devices d = { -1, -1, 0, 0 };
    vircgroup_v2_log_func f = 0;
    (void)f;
    return d.count == 0 && VIRCGROUP_DEVICE_RWM == 7 ? 0 : 1;
}
