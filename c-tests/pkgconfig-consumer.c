/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The smallest consumer of the installed library: built by
 * scripts/check-install.sh with only what pkg-config prints.
 */
#include <vircgroup_v2_devices.h>

#include <errno.h>
#include <stdio.h>

int main(void)
{
    if (vircgroup_v2_devices_get_key(1, 3) != 0x0000000100000003ULL) {
        fprintf(stderr, "get_key(1, 3) is wrong\n");
        return 1;
    }
    errno = 0;
    if (vircgroup_v2_devices_list(NULL) != NULL || errno != EINVAL ||
        vircgroup_v2_last_error()[0] == '\0') {
        fprintf(stderr, "list(NULL) did not fail with EINVAL and a message\n");
        return 1;
    }
    printf("consumer: linked through pkg-config, last error '%s'\n",
           vircgroup_v2_last_error());
    return 0;
}
