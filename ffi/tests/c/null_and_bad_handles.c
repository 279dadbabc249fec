/* Calls every exported function of medvault.h with NULL arguments and with bad vault
 * references (never opened, 0, closed) and bad strings to free, and expects the
 * documented error code and a message, never a crash. Run under valgrind by .ci/run;
 * tests/header.rs checks that every function of the header is called here.
 *
 *   null_and_bad_handles NEW_VAULT_DIRECTORY
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medvault.h"

static int failures = 0;
static int checks = 0;

/* Checks that `got` is `want` and that a failure left a message and a kind. */
static void expect(const char *what, int line, MedvaultStatus got, MedvaultStatus want) {
    checks++;
    if (got != want) {
        fprintf(stderr, "line %d: %s: status %d, expected %d (%s)\n", line, what, (int)got,
                (int)want, medvault_last_error_message() ? medvault_last_error_message() : "");
        failures++;
        return;
    }
    if (want != MEDVAULT_STATUS_OK &&
        (medvault_last_error_message() == NULL || medvault_last_error_kind() == NULL ||
         medvault_last_error_status() != want)) {
        fprintf(stderr, "line %d: %s: no last error recorded\n", line, what);
        failures++;
    }
    if (want == MEDVAULT_STATUS_OK && medvault_last_error_message() != NULL) {
        fprintf(stderr, "line %d: %s: a success left a last error\n", line, what);
        failures++;
    }
}
#define EXPECT(call, want) expect(#call, __LINE__, (call), (want))
#define NULLARG MEDVAULT_STATUS_NULL_ARGUMENT
#define BAD MEDVAULT_STATUS_BAD_HANDLE

/* Every vault function with vault reference `v`, other arguments valid: `want`. */
static void all_with_vault(MedvaultVault v, MedvaultStatus want) {
    MedvaultAccess a = {.actor = "tester", .purpose = "maintenance", .reason = NULL};
    const char *one[] = {"x"};
    uint8_t key[32] = {0};
    MedvaultKdf kdf = {.memory_kib = 64, .iterations = 1, .lanes = 1};
    char *out = NULL;
    uint64_t n = 0;
    int32_t erased = 0;
    uint32_t version = 0;
    EXPECT(medvault_put(v, &a, "s", "c", "r", "{\"a\":1}"), want);
    EXPECT(medvault_get(v, &a, "s", "c", "r", &out), want);
    EXPECT(medvault_get_fields(v, &a, "s", "c", "r", one, 1, &out), want);
    EXPECT(medvault_delete(v, &a, "s", "c", "r"), want);
    EXPECT(medvault_records_of(v, &a, "s", NULL, &out), want);
    EXPECT(medvault_find(v, &a, "Patient", "identifier", one, 1, &out), want);
    EXPECT(medvault_erase_subject(v, &a, "s", &n), want);
    EXPECT(medvault_is_erased(v, &a, "s", &erased), want);
    EXPECT(medvault_readmit_subject(v, &a, "s", "returned"), want);
    EXPECT(medvault_set_policy(v, &a, "{}", &version), want);
    EXPECT(medvault_verify(v, &a, NULL, &n), want);
    EXPECT(medvault_checkpoint(v, &a, &out), want);
    EXPECT(medvault_audit_query(v, &a, NULL, &out), want);
    EXPECT(medvault_rotate_root_passphrase(v, &a, "new", &kdf, &n), want);
    EXPECT(medvault_rotate_root_key(v, &a, key, 32, &n), want);
    EXPECT(medvault_rotate_data_keys(v, &a, NULL, 0, &n, &n), want);
    EXPECT(medvault_import_fhir(v, &a, "/nonexistent.ndjson", &out), want);
    EXPECT(medvault_close(v), want);
    if (out != NULL) {
        fprintf(stderr, "an out-pointer was set by a failed call\n");
        failures++;
    }
}

/* Every vault function with a good vault and each pointer argument NULL in turn. */
static void nulls_with_vault(MedvaultVault v) {
    MedvaultAccess a = {.actor = "tester", .purpose = "maintenance", .reason = NULL};
    MedvaultAccess no_actor = {.actor = NULL, .purpose = "care", .reason = NULL};
    MedvaultAccess no_purpose = {.actor = "tester", .purpose = NULL, .reason = NULL};
    const char *one[] = {"x"};
    const char *with_null[] = {NULL};
    /* roles NULL with a length, and a NULL role name. */
    MedvaultAccess null_roles = {.actor = "tester", .purpose = "care", .roles_len = 1};
    MedvaultAccess null_role = {.actor = "tester", .purpose = "care", .roles = with_null,
                                .roles_len = 1};
    int32_t erased = 0;
    char *out = NULL;
    EXPECT(medvault_put(v, NULL, "s", "c", "r", "{}"), NULLARG);
    EXPECT(medvault_put(v, &no_actor, "s", "c", "r", "{}"), NULLARG);
    EXPECT(medvault_put(v, &no_purpose, "s", "c", "r", "{}"), NULLARG);
    EXPECT(medvault_put(v, &a, NULL, "c", "r", "{}"), NULLARG);
    EXPECT(medvault_put(v, &a, "s", NULL, "r", "{}"), NULLARG);
    EXPECT(medvault_put(v, &a, "s", "c", NULL, "{}"), NULLARG);
    EXPECT(medvault_put(v, &a, "s", "c", "r", NULL), NULLARG);
    EXPECT(medvault_get(v, &a, "s", "c", "r", NULL), NULLARG);
    EXPECT(medvault_get(v, NULL, "s", "c", "r", &out), NULLARG);
    EXPECT(medvault_get(v, &a, NULL, "c", "r", &out), NULLARG);
    EXPECT(medvault_get_fields(v, &a, "s", "c", "r", NULL, 1, &out), NULLARG);
    EXPECT(medvault_get_fields(v, &a, "s", "c", "r", with_null, 1, &out), NULLARG);
    EXPECT(medvault_get_fields(v, &a, "s", "c", "r", one, 1, NULL), NULLARG);
    EXPECT(medvault_get_fields(v, NULL, "s", "c", "r", one, 1, &out), NULLARG);
    EXPECT(medvault_delete(v, NULL, "s", "c", "r"), NULLARG);
    EXPECT(medvault_delete(v, &a, "s", NULL, "r"), NULLARG);
    EXPECT(medvault_records_of(v, &a, NULL, NULL, &out), NULLARG);
    EXPECT(medvault_records_of(v, &a, "s", NULL, NULL), NULLARG);
    EXPECT(medvault_records_of(v, NULL, "s", NULL, &out), NULLARG);
    EXPECT(medvault_find(v, &a, NULL, "i", one, 1, &out), NULLARG);
    EXPECT(medvault_find(v, &a, "c", NULL, one, 1, &out), NULLARG);
    EXPECT(medvault_find(v, &a, "c", "i", NULL, 1, &out), NULLARG);
    EXPECT(medvault_find(v, &a, "c", "i", one, 1, NULL), NULLARG);
    EXPECT(medvault_find(v, NULL, "c", "i", one, 1, &out), NULLARG);
    EXPECT(medvault_erase_subject(v, &a, NULL, NULL), NULLARG);
    EXPECT(medvault_erase_subject(v, NULL, "s", NULL), NULLARG);
    EXPECT(medvault_is_erased(v, &a, NULL, &erased), NULLARG);
    EXPECT(medvault_is_erased(v, &a, "s", NULL), NULLARG);
    EXPECT(medvault_is_erased(v, NULL, "s", &erased), NULLARG);
    EXPECT(medvault_readmit_subject(v, &a, NULL, "returned"), NULLARG);
    EXPECT(medvault_readmit_subject(v, &a, "s", NULL), NULLARG);
    EXPECT(medvault_readmit_subject(v, NULL, "s", "returned"), NULLARG);
    EXPECT(medvault_set_policy(v, &a, NULL, NULL), NULLARG);
    EXPECT(medvault_set_policy(v, NULL, "{}", NULL), NULLARG);
    EXPECT(medvault_put(v, &null_roles, "s", "c", "r", "{}"), NULLARG);
    EXPECT(medvault_put(v, &null_role, "s", "c", "r", "{}"), NULLARG);
    EXPECT(medvault_verify(v, NULL, NULL, NULL), NULLARG);
    EXPECT(medvault_checkpoint(v, &a, NULL), NULLARG);
    EXPECT(medvault_checkpoint(v, NULL, &out), NULLARG);
    EXPECT(medvault_audit_query(v, &a, NULL, NULL), NULLARG);
    EXPECT(medvault_audit_query(v, NULL, NULL, &out), NULLARG);
    EXPECT(medvault_rotate_root_passphrase(v, &a, NULL, NULL, NULL), NULLARG);
    EXPECT(medvault_rotate_root_passphrase(v, NULL, "p", NULL, NULL), NULLARG);
    EXPECT(medvault_rotate_root_key(v, &a, NULL, 32, NULL), NULLARG);
    EXPECT(medvault_rotate_root_key(v, NULL, (const uint8_t *)"0123456789abcdef0123456789abcdef", 32, NULL), NULLARG);
    EXPECT(medvault_rotate_data_keys(v, &a, NULL, 2, NULL, NULL), NULLARG);
    EXPECT(medvault_rotate_data_keys(v, &a, with_null, 1, NULL, NULL), NULLARG);
    EXPECT(medvault_rotate_data_keys(v, NULL, NULL, 0, NULL, NULL), NULLARG);
    EXPECT(medvault_import_fhir(v, &a, NULL, NULL), NULLARG);
    EXPECT(medvault_import_fhir(v, NULL, "x.ndjson", NULL), NULLARG);
    /* Bad values that are not NULL: wrong key length, malformed JSON and checkpoint,
     * a purpose that does not exist, break-the-glass without a reason. */
    MedvaultAccess bad_purpose = {.actor = "tester", .purpose = "curiosity", .reason = NULL};
    MedvaultAccess btg = {.actor = "tester", .purpose = "emergency", .reason = NULL};
    EXPECT(medvault_rotate_root_key(v, &a, (const uint8_t *)"short", 5, NULL),
           MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_put(v, &a, "s", "c", "r", "{not json"), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_put(v, &a, "s", "c", "r", "[1,2]"), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_verify(v, &a, "mvcp1:zz", NULL), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_audit_query(v, &a, "{\"bogus\":1}", &out), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_put(v, &bad_purpose, "s", "c", "r", "{}"), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_put(v, &btg, "s", "c", "r", "{}"), MEDVAULT_STATUS_ACCESS_DENIED);
    /* Not a policy denial (this vault has no policy): no rule. */
    if (medvault_last_error_rule() != NULL) {
        fprintf(stderr, "break-the-glass without a reason reported a policy rule\n");
        failures++;
    }
    const char *empty_role[] = {""};
    MedvaultAccess bad_role = {.actor = "tester", .purpose = "care", .roles = empty_role,
                               .roles_len = 1};
    EXPECT(medvault_put(v, &bad_role, "s", "c", "r", "{}"), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_set_policy(v, &a, "{\"bogus\":1}", NULL), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_readmit_subject(v, &a, "s", "returned"), MEDVAULT_STATUS_NOT_FOUND);
    EXPECT(medvault_get(v, &a, "nobody", "c", "r", &out), MEDVAULT_STATUS_NOT_FOUND);
    if (out != NULL) {
        fprintf(stderr, "an out-pointer was set by a failed call\n");
        failures++;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NEW_VAULT_DIRECTORY\n", argv[0]);
        return 2;
    }
    MedvaultAccess a = {.actor = "tester", .purpose = "maintenance", .reason = NULL};
    uint8_t key[32] = {0};
    MedvaultVault v = 0;
    char *s = NULL;

    /* Functions without a vault. */
    EXPECT(medvault_string_free(NULL), MEDVAULT_STATUS_OK);
    if (medvault_version() == NULL || medvault_last_error_kind() != NULL ||
        medvault_last_error_rule() != NULL)
        failures++;
    EXPECT(medvault_default_policy(NULL), NULLARG);
    if (medvault_last_error_rule() != NULL) failures++;
    EXPECT(medvault_default_policy(&s), MEDVAULT_STATUS_OK);
    if (s == NULL || strstr(s, "\"care-all\"") == NULL) {
        fprintf(stderr, "the default policy text does not name care-all\n");
        failures++;
    }
    EXPECT(medvault_string_free(s), MEDVAULT_STATUS_OK);
    s = NULL;
    EXPECT(medvault_create_passphrase(NULL, "p", NULL, NULL, &v), NULLARG);
    EXPECT(medvault_create_passphrase(argv[1], NULL, NULL, NULL, &v), NULLARG);
    EXPECT(medvault_create_passphrase(argv[1], "p", NULL, NULL, NULL), NULLARG);
    EXPECT(medvault_create_key(NULL, key, 32, NULL, &v), NULLARG);
    EXPECT(medvault_create_key(argv[1], NULL, 32, NULL, &v), NULLARG);
    EXPECT(medvault_create_key(argv[1], key, 32, NULL, NULL), NULLARG);
    EXPECT(medvault_create_key(argv[1], key, 31, NULL, &v), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_open_passphrase(NULL, "p", NULL, &v), NULLARG);
    EXPECT(medvault_open_passphrase(argv[1], NULL, NULL, &v), NULLARG);
    EXPECT(medvault_open_passphrase(argv[1], "p", NULL, NULL), NULLARG);
    EXPECT(medvault_open_key(NULL, key, 32, NULL, &v), NULLARG);
    EXPECT(medvault_open_key(argv[1], NULL, 32, NULL, &v), NULLARG);
    EXPECT(medvault_open_key(argv[1], key, 32, NULL, NULL), NULLARG);
    if (v != 0) failures++;

    /* Bad vault references: 0, never issued, and (below) closed. */
    all_with_vault(0, BAD);
    all_with_vault(0xdeadbeefULL, BAD);
    all_with_vault(UINT64_MAX, BAD);

    /* A real vault: NULL in every pointer argument, then closed and used again. */
    MedvaultVault vault = 0, other = 0;
    EXPECT(medvault_create_key(argv[1], key, 32, &a, &vault), MEDVAULT_STATUS_OK);
    EXPECT(medvault_create_key(argv[1], key, 32, &a, &other), MEDVAULT_STATUS_ALREADY_EXISTS);
    EXPECT(medvault_open_key(argv[1], key, 32, &a, &other), MEDVAULT_STATUS_STORAGE); /* locked */
    if (other != 0) failures++; /* failed calls leave the out-pointer cleared */
    nulls_with_vault(vault);
    EXPECT(medvault_checkpoint(vault, &a, &s), MEDVAULT_STATUS_OK);
    EXPECT(medvault_string_free(s), MEDVAULT_STATUS_OK);
    EXPECT(medvault_string_free(s), BAD); /* double free: detected, not a crash */
    char local[] = "not from medvault";
    EXPECT(medvault_string_free(local), BAD);
    EXPECT(medvault_close(vault), MEDVAULT_STATUS_OK);
    all_with_vault(vault, BAD); /* closed: every call, close included, is refused */

    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
