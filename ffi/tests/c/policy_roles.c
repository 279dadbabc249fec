/* The C ABI on a governed vault: roles in MedvaultAccess under the default clinic policy
 * (docs/POLICY.md "The default clinic policy"), and the erasure memory (SECURITY.md
 * "Erasure memory"): a distinct status for a write of an erased subject, is_erased and
 * readmit_subject. Run under valgrind by .ci/c-abi.
 *
 * Oracle: every expected status, rule name and JSON text below is written by hand from
 * docs/POLICY.md's tables and the records this program writes; nothing is computed by
 * the policy code.
 *
 *   policy_roles NEW_VAULT_DIRECTORY
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medvault.h"

static int failures = 0;
static int checks = 0;

static void status_is(int line, const char *what, MedvaultStatus got, MedvaultStatus want) {
    checks++;
    if (got != want) {
        fprintf(stderr, "line %d: %s: status %d, expected %d (%s)\n", line, what, (int)got,
                (int)want, medvault_last_error_message() ? medvault_last_error_message() : "");
        failures++;
    }
}
#define EXPECT(call, want) status_is(__LINE__, #call, (call), (want))

/* The last failure's rule is `rule`, its message names it, and its kind is `kind`. */
static void denied_by(int line, const char *rule) {
    checks++;
    const char *msg = medvault_last_error_message();
    const char *kind = medvault_last_error_kind();
    const char *got = medvault_last_error_rule();
    char quoted[96];
    snprintf(quoted, sizeof quoted, "`%s`", rule);
    if (msg == NULL || strstr(msg, quoted) == NULL || kind == NULL ||
        strcmp(kind, "access_denied") != 0 || got == NULL || strcmp(got, rule) != 0) {
        fprintf(stderr, "line %d: expected a denial by rule %s, got kind %s rule %s: %s\n", line,
                rule, kind ? kind : "(null)", got ? got : "(null)", msg ? msg : "(null)");
        failures++;
    }
}
#define DENIED_BY(rule) denied_by(__LINE__, (rule))

/* `*out` holds exactly `want`; frees it. */
static void text_is(int line, char **out, const char *want) {
    checks++;
    if (*out == NULL || strcmp(*out, want) != 0) {
        fprintf(stderr, "line %d: got %s\n   expected %s\n", line, *out ? *out : "(null)", want);
        failures++;
    }
    if (*out != NULL && medvault_string_free(*out) != MEDVAULT_STATUS_OK) {
        fprintf(stderr, "line %d: string_free failed\n", line);
        failures++;
    }
    *out = NULL;
}
#define TEXT_IS(out, want) text_is(__LINE__, &(out), (want))

static void no_data(int line, char *out) {
    checks++;
    if (out != NULL) {
        fprintf(stderr, "line %d: a refused call returned data: %s\n", line, out);
        medvault_string_free(out);
        failures++;
    }
}
#define NO_DATA(out) no_data(__LINE__, (out))

static const char PATIENT[] =
    "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"identifier\":[{\"value\":\"MRN-1\"}],"
    "\"name\":[{\"family\":\"Doe\"}],\"birthDate\":\"1970-01-01\"}";
static const char ENCOUNTER[] =
    "{\"resourceType\":\"Encounter\",\"id\":\"e1\",\"status\":\"finished\","
    "\"class\":{\"code\":\"AMB\"},\"period\":{\"start\":\"2026-01-05\"},"
    "\"reasonCode\":[{\"text\":\"cough\"}],\"diagnosis\":[{\"rank\":1}]}";

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: policy_roles NEW_VAULT_DIRECTORY\n");
        return 2;
    }
    const char *care_roles[] = {"care"};
    const char *billing_roles[] = {"billing"};
    const char *research_roles[] = {"research"};
    const char *admin_roles[] = {"administration"};
    const char *dpo_roles[] = {"dpo"};
    const char *integration_roles[] = {"integration"};
    const char *two_roles[] = {"research", "billing"};
    MedvaultAccess admin = {.actor = "admin-1", .purpose = "administration",
                            .roles = admin_roles, .roles_len = 1};
    MedvaultAccess dr = {.actor = "dr-a", .purpose = "care", .roles = care_roles, .roles_len = 1};
    /* The purpose as its HL7 code: the same as `billing`. */
    MedvaultAccess clerk = {.actor = "clerk-b", .purpose = "HPAYMT", .roles = billing_roles,
                            .roles_len = 1};
    MedvaultAccess scientist = {.actor = "sci-c", .purpose = "research", .roles = research_roles,
                                .roles_len = 1};
    MedvaultAccess dpo = {.actor = "dpo-d", .purpose = "patient-request", .roles = dpo_roles,
                          .roles_len = 1};
    MedvaultAccess importer = {.actor = "etl-e", .purpose = "maintenance",
                               .roles = integration_roles, .roles_len = 1};
    MedvaultAccess no_role = {.actor = "nurse-f", .purpose = "care"};
    MedvaultAccess wrong_purpose = {.actor = "clerk-b", .purpose = "care", .roles = billing_roles,
                                    .roles_len = 1};
    MedvaultAccess two = {.actor = "clerk-g", .purpose = "billing", .roles = two_roles,
                          .roles_len = 2};
    MedvaultAccess undeclared = {.actor = "dr-a", .purpose = "care", .roles = care_roles,
                                 .roles_len = 1, .purpose_code = "PUBHLTH"};
    MedvaultAccess null_role_array = {.actor = "dr-a", .purpose = "care", .roles_len = 1};
    uint8_t key[32];
    memset(key, 7, sizeof key);
    MedvaultVault v = 0;
    char *out = NULL;
    uint32_t version = 0;
    uint64_t n = 0;
    int32_t erased = -1;
    const char *fields[] = {"name"};
    const char *ok_fields[] = {"identifier", "name"};

    EXPECT(medvault_create_key(argv[1], key, sizeof key, &admin, &v), MEDVAULT_STATUS_OK);
    EXPECT(medvault_default_policy(&out), MEDVAULT_STATUS_OK);
    EXPECT(medvault_set_policy(v, &admin, out, &version), MEDVAULT_STATUS_OK);
    medvault_string_free(out);
    out = NULL;
    checks++;
    if (version != 1) {
        fprintf(stderr, "first policy version %u, expected 1\n", version);
        failures++;
    }

    /* care (TREAT, rule care-all) writes and reads everything. */
    EXPECT(medvault_put(v, &dr, "p1", "Patient", "p1", PATIENT), MEDVAULT_STATUS_OK);
    EXPECT(medvault_put(v, &dr, "p1", "Encounter", "e1", ENCOUNTER), MEDVAULT_STATUS_OK);
    EXPECT(medvault_get(v, &dr, "p1", "Patient", "p1", &out), MEDVAULT_STATUS_OK);
    TEXT_IS(out, PATIENT);

    /* billing (HPAYMT, rule billing-claims): Patient resourceType, id, identifier only;
     * Encounter resourceType, id, period, type, class, serviceType, reasonCode. */
    EXPECT(medvault_get(v, &clerk, "p1", "Patient", "p1", &out), MEDVAULT_STATUS_OK);
    TEXT_IS(out, "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"identifier\":[{\"value\":\"MRN-1\"}]}");
    EXPECT(medvault_get(v, &clerk, "p1", "Encounter", "e1", &out), MEDVAULT_STATUS_OK);
    TEXT_IS(out, "{\"resourceType\":\"Encounter\",\"id\":\"e1\",\"class\":{\"code\":\"AMB\"},"
                 "\"period\":{\"start\":\"2026-01-05\"},\"reasonCode\":[{\"text\":\"cough\"}]}");
    EXPECT(medvault_get_fields(v, &clerk, "p1", "Patient", "p1", ok_fields, 2, &out),
           MEDVAULT_STATUS_OK);
    TEXT_IS(out, "{\"identifier\":[{\"value\":\"MRN-1\"}]}");
    /* Asking only for an ungranted field. */
    EXPECT(medvault_get_fields(v, &clerk, "p1", "Patient", "p1", fields, 1, &out),
           MEDVAULT_STATUS_ACCESS_DENIED);
    DENIED_BY("field-not-granted");
    NO_DATA(out);
    /* Billing writes nothing. */
    EXPECT(medvault_put(v, &clerk, "p1", "Claim", "c1", "{\"resourceType\":\"Claim\"}"),
           MEDVAULT_STATUS_ACCESS_DENIED);
    /* Two roles: the one that may invoke HPAYMT decides. */
    EXPECT(medvault_get(v, &two, "p1", "Patient", "p1", &out), MEDVAULT_STATUS_OK);
    TEXT_IS(out, "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"identifier\":[{\"value\":\"MRN-1\"}]}");

    /* research (HRESCH): no rule, reads nothing directly. */
    EXPECT(medvault_get(v, &scientist, "p1", "Patient", "p1", &out),
           MEDVAULT_STATUS_ACCESS_DENIED);
    DENIED_BY("deny-by-default");
    NO_DATA(out);
    /* integration (HSYSADMIN, rule system-import): writes, reads nothing. */
    EXPECT(medvault_put(v, &importer, "p2", "Patient", "p2",
                        "{\"resourceType\":\"Patient\",\"id\":\"p2\"}"),
           MEDVAULT_STATUS_OK);
    EXPECT(medvault_get(v, &importer, "p2", "Patient", "p2", &out),
           MEDVAULT_STATUS_ACCESS_DENIED);
    DENIED_BY("system-import");
    NO_DATA(out);
    /* administration (HOPERAT): no rule, no clinical field. */
    EXPECT(medvault_get(v, &admin, "p1", "Patient", "p1", &out), MEDVAULT_STATUS_ACCESS_DENIED);
    DENIED_BY("deny-by-default");
    NO_DATA(out);
    /* No role; a role that may not invoke the purpose; an undeclared custom code. */
    EXPECT(medvault_get(v, &no_role, "p1", "Patient", "p1", &out), MEDVAULT_STATUS_ACCESS_DENIED);
    DENIED_BY("no-role");
    NO_DATA(out);
    EXPECT(medvault_get(v, &wrong_purpose, "p1", "Patient", "p1", &out),
           MEDVAULT_STATUS_ACCESS_DENIED);
    DENIED_BY("role-purpose");
    NO_DATA(out);
    EXPECT(medvault_get(v, &undeclared, "p1", "Patient", "p1", &out),
           MEDVAULT_STATUS_ACCESS_DENIED);
    DENIED_BY("undeclared-purpose");
    NO_DATA(out);
    EXPECT(medvault_get(v, &null_role_array, "p1", "Patient", "p1", &out),
           MEDVAULT_STATUS_NULL_ARGUMENT);
    NO_DATA(out);
    /* A failure that is not a policy denial has no rule. */
    checks++;
    if (medvault_last_error_rule() != NULL) {
        fprintf(stderr, "a NULL argument reported a rule\n");
        failures++;
    }
    /* care may not erase (care-all has no erase). */
    EXPECT(medvault_erase_subject(v, &dr, "p1", &n), MEDVAULT_STATUS_ACCESS_DENIED);

    /* Erasure memory. dpo (PATRQT, rule patient-request) erases p1: 2 records. */
    EXPECT(medvault_is_erased(v, &dpo, "p1", &erased), MEDVAULT_STATUS_OK);
    checks++;
    if (erased != 0) {
        fprintf(stderr, "p1 erased before its erasure: %d\n", erased);
        failures++;
    }
    EXPECT(medvault_erase_subject(v, &dpo, "p1", &n), MEDVAULT_STATUS_OK);
    checks++;
    if (n != 2) {
        fprintf(stderr, "erased %llu records, expected 2\n", (unsigned long long)n);
        failures++;
    }
    EXPECT(medvault_is_erased(v, &dpo, "p1", &erased), MEDVAULT_STATUS_OK);
    checks++;
    if (erased != 1) {
        fprintf(stderr, "p1 not remembered as erased: %d\n", erased);
        failures++;
    }
    EXPECT(medvault_is_erased(v, &dpo, "never-seen", &erased), MEDVAULT_STATUS_OK);
    checks++;
    if (erased != 0) {
        fprintf(stderr, "a subject never written is erased: %d\n", erased);
        failures++;
    }
    /* A late write of the erased patient is refused with its own status. */
    EXPECT(medvault_put(v, &dr, "p1", "Patient", "p1", PATIENT), MEDVAULT_STATUS_SUBJECT_ERASED);
    checks++;
    if (medvault_last_error_kind() == NULL ||
        strcmp(medvault_last_error_kind(), "subject_erased") != 0 ||
        medvault_last_error_status() != MEDVAULT_STATUS_SUBJECT_ERASED) {
        fprintf(stderr, "the refusal's kind is not subject_erased\n");
        failures++;
    }
    /* Re-admission: a reason is required, and erase authority. */
    EXPECT(medvault_readmit_subject(v, &dpo, "p1", ""), MEDVAULT_STATUS_INVALID_INPUT);
    EXPECT(medvault_readmit_subject(v, &dpo, "p1", NULL), MEDVAULT_STATUS_NULL_ARGUMENT);
    EXPECT(medvault_readmit_subject(v, &dr, "p1", "patient returned"),
           MEDVAULT_STATUS_ACCESS_DENIED);
    EXPECT(medvault_readmit_subject(v, &dpo, "p2", "never erased"), MEDVAULT_STATUS_NOT_FOUND);
    EXPECT(medvault_readmit_subject(v, &dpo, "p1", "patient returned for care, consent on file"),
           MEDVAULT_STATUS_OK);
    EXPECT(medvault_is_erased(v, &dpo, "p1", &erased), MEDVAULT_STATUS_OK);
    checks++;
    if (erased != 0) {
        fprintf(stderr, "p1 still erased after re-admission: %d\n", erased);
        failures++;
    }
    /* A new incarnation: nothing of the erased one comes back. */
    EXPECT(medvault_get(v, &dr, "p1", "Encounter", "e1", &out), MEDVAULT_STATUS_NOT_FOUND);
    NO_DATA(out);
    EXPECT(medvault_put(v, &dr, "p1", "Patient", "p1", "{\"resourceType\":\"Patient\",\"id\":\"p1\"}"),
           MEDVAULT_STATUS_OK);
    EXPECT(medvault_get(v, &dr, "p1", "Patient", "p1", &out), MEDVAULT_STATUS_OK);
    TEXT_IS(out, "{\"resourceType\":\"Patient\",\"id\":\"p1\"}");
    EXPECT(medvault_readmit_subject(v, &dpo, "p1", "again"), MEDVAULT_STATUS_NOT_FOUND);

    /* The log chain of all of this verifies (administration may verify). */
    EXPECT(medvault_verify(v, &admin, NULL, &n), MEDVAULT_STATUS_OK);
    EXPECT(medvault_close(v), MEDVAULT_STATUS_OK);

    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
