# Reference intervals at alpha = 0.1 (90% intervals) for tests/test_alpha.py, from R's survival.
# Re-run from the repository root:  Rscript tests/reference/reference_alpha.R
# (Debian: apt-get install r-base-core r-cran-survival). CI does not need R: the output
# (expected_alpha.csv) is committed beside this script. Same input as reference.R.
suppressMessages(library(survival))
here <- "tests/reference"
s <- read.csv(file.path(here, "survival_input.csv"), stringsAsFactors = FALSE)
s$arm <- factor(s$arm, levels = c("MMF", "IVIG", "JAKi"))
rows <- list()
add <- function(model, term, estimate, lower, upper)
  rows[[length(rows) + 1]] <<- data.frame(model = model, term = term, estimate = estimate, lower = lower, upper = upper)

# Cox hazard ratios with 90% intervals from the robust (cluster) variance, unadjusted and adjusted.
cox <- coxph(Surv(time, event) ~ arm, data = s, ties = "efron", cluster = patient_id)
ci <- summary(cox, conf.int = 0.90)$conf.int
add("cox_unadjusted", rownames(ci), ci[, "exp(coef)"], ci[, "lower .90"], ci[, "upper .90"])
sa <- s[complete.cases(s[, c("baseline_cdasi", "line_number", "mda5", "ild")]), ]
coxa <- coxph(Surv(time, event) ~ arm + baseline_cdasi + line_number + mda5 + ild, data = sa, ties = "efron",
              cluster = patient_id)
ci <- summary(coxa, conf.int = 0.90)$conf.int
add("cox_adjusted", rownames(ci), ci[, "exp(coef)"], ci[, "lower .90"], ci[, "upper .90"])

# Kaplan-Meier medians and survival at fixed times with 90% log-log intervals.
km <- survfit(Surv(time, event) ~ arm, data = s, conf.type = "log-log", conf.int = 0.90)
tab <- summary(km)$table
add("km_median", sub("arm=", "", rownames(tab)), tab[, "median"], tab[, "0.9LCL"], tab[, "0.9UCL"])
sm <- summary(km, times = c(4, 8, 12, 24), extend = TRUE)
add("km_survival", paste0(sub("arm=", "", as.character(sm$strata)), "@", sm$time), sm$surv, sm$lower, sm$upper)
write.csv(do.call(rbind, rows), file.path(here, "expected_alpha.csv"), row.names = FALSE)
