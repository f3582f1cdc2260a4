# Reference numbers for tests/test_reference.py, from R's survival and lme4.
# Re-run from the repository root:  Rscript tests/reference/reference.R
# (Debian: apt-get install r-base-core r-cran-survival r-cran-lme4). CI does not need R: the
# outputs (expected_*.csv) are committed beside this script.
suppressMessages({library(survival); library(lme4)})
here <- "tests/reference"
s <- read.csv(file.path(here, "survival_input.csv"), stringsAsFactors = FALSE)
s$arm <- factor(s$arm, levels = c("MMF", "IVIG", "JAKi"))
out <- function(df, name) write.csv(df, file.path(here, name), row.names = FALSE)

# Kaplan-Meier medians with log-log CIs (lifelines' default band), per arm.
km <- survfit(Surv(time, event) ~ arm, data = s, conf.type = "log-log")
tab <- summary(km)$table
out(data.frame(arm = sub("arm=", "", rownames(tab)), n = tab[, "records"], events = tab[, "events"],
               median = tab[, "median"], lower = tab[, "0.95LCL"], upper = tab[, "0.95UCL"]), "expected_km.csv")
# Survival at fixed times, per arm.
times <- c(4, 8, 12, 24)
sm <- summary(km, times = times, extend = TRUE)
out(data.frame(arm = sub("arm=", "", as.character(sm$strata)), time = sm$time, surv = sm$surv,
               lower = sm$lower, upper = sm$upper), "expected_km_times.csv")

# Log-rank across the three arms, and each pair.
lr <- survdiff(Surv(time, event) ~ arm, data = s)
pairs <- combn(levels(s$arm), 2)
pw <- apply(pairs, 2, function(p) {
  d <- s[s$arm %in% p, ]; d$arm <- droplevels(d$arm); survdiff(Surv(time, event) ~ arm, data = d)$chisq })
out(data.frame(test = c("all", paste(pairs[1, ], pairs[2, ], sep = "-")), chisq = c(lr$chisq, pw),
               df = c(length(lr$n) - 1, rep(1, ncol(pairs)))), "expected_logrank.csv")

# Cox: Efron ties, robust (sandwich) SEs clustered by patient; unadjusted and adjusted.
cox <- coxph(Surv(time, event) ~ arm, data = s, ties = "efron", cluster = patient_id)
cc <- summary(cox)$coefficients
out(data.frame(term = rownames(cc), coef = cc[, "coef"], robust_se = cc[, "robust se"],
               model = "unadjusted"), "expected_cox.csv")
sa <- s[complete.cases(s[, c("baseline_cdasi", "line_number", "mda5", "ild")]), ]
coxa <- coxph(Surv(time, event) ~ arm + baseline_cdasi + line_number + mda5 + ild, data = sa, ties = "efron",
              cluster = patient_id)
ca <- summary(coxa)$coefficients
write.table(data.frame(term = rownames(ca), coef = ca[, "coef"], robust_se = ca[, "robust se"], model = "adjusted"),
            file.path(here, "expected_cox.csv"), sep = ",", append = TRUE, col.names = FALSE, row.names = FALSE)

# Weighted Cox (as the IPW comparison uses it): deterministic weights 1 + (line_number mod 3) / 2.
s$w <- 1 + (s$line_number %% 3) / 2
coxw <- coxph(Surv(time, event) ~ arm, data = s, ties = "efron", cluster = patient_id, weights = w)
cw <- summary(coxw)$coefficients
write.table(data.frame(term = rownames(cw), coef = cw[, "coef"], robust_se = cw[, "robust se"], model = "weighted"),
            file.path(here, "expected_cox.csv"), sep = ",", append = TRUE, col.names = FALSE, row.names = FALSE)

# Competing risks: Aalen-Johansen cumulative incidence of response (1) and of stopping first (2).
s$state <- factor(s$code, levels = 0:2, labels = c("censor", "response", "stopped"))
rows <- list()
for (a in levels(s$arm)) {
  fit <- survfit(Surv(time, state) ~ 1, data = s[s$arm == a, ])
  sm <- summary(fit, times = times, extend = TRUE)
  rows[[a]] <- data.frame(arm = a, time = sm$time, response = sm$pstate[, which(fit$states == "response")],
                          stopped = sm$pstate[, which(fit$states == "stopped")])
}
out(do.call(rbind, rows), "expected_cif.csv")

# Linear mixed model: REML, random intercept and slope for weeks by line.
tr <- read.csv(file.path(here, "trajectories_input.csv"), stringsAsFactors = FALSE)
tr$arm <- factor(tr$arm, levels = c("MMF", "IVIG", "JAKi"))
m <- lmer(cdasi_activity ~ weeks * arm + (weeks | line_id), data = tr, REML = TRUE,
          control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
fe <- summary(m)$coefficients
vc <- as.data.frame(VarCorr(m))
out(data.frame(term = rownames(fe), estimate = fe[, "Estimate"], se = fe[, "Std. Error"]), "expected_lmer.csv")
out(data.frame(component = c("intercept_var", "slope_var", "intercept_slope_cov", "residual_var"),
               value = c(vc$vcov[1], vc$vcov[2], vc$vcov[3], vc$vcov[4])), "expected_lmer_vc.csv")
cat(R.version.string, "survival", as.character(packageVersion("survival")), "lme4",
    as.character(packageVersion("lme4")), "\n", file = file.path(here, "expected_versions.txt"))
